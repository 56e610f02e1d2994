"""Public QA sets over a corpus, through the Hugging Face ``datasets`` library.

* Search-R1-style QA (NQ, TriviaQA, HotpotQA, 2Wiki, Musique, Bamboogle, ...): rows with
  ``question`` and ``golden_answers`` (a list; ``answer``/``answers`` work too), over a
  Wikipedia JSONL corpus (``{"id", "contents": "\\"Title\\"\\ntext"}`` as in Search-R1's
  wiki-18 dump, or ``{"url", "title", "html"|"text"}``). The first golden answer is the
  answer, the others aliases.
* BrowseComp-Plus: decrypted query rows (``query_id``, ``query``, ``answer``,
  ``evidence_docs``/``gold_docs`` as lists of ``{docid}``) over its corpus
  (``{"docid", "text", "url"}``); the evidence documents become the evidence pages
  (their qrels).

Machines here are offline, so the tests run this code on small files they write
(``data_files``). Online, pass a dataset repo id as ``path``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from agent_envs.envs.browser.backends import Backend
from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document
from agent_envs.envs.browser.diskindex import DiskCorpus, is_index
from agent_envs.envs.browser.tasks import BrowserTask, BrowserTaskSource
from agent_envs.errors import DatasetError
from agent_envs.tasks.base import Split
from agent_envs.tasks.finite import FiniteTasks

__all__ = ["LoadedBrowserTasks", "load_browsecomp_plus", "load_search_r1"]

DataFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class LoadedBrowserTasks(FiniteTasks, BrowserTaskSource):
    """A finite set of browser tasks answered from one corpus."""

    error_class = DatasetError

    def __init__(self, *, name: str, tasks: Sequence[BrowserTask], origin: str,
                 corpus: Corpus | DiskCorpus, cache_dir: str | None = None) -> None:
        super().__init__(name=name, tasks=tasks, origin=origin)
        self.corpus = corpus
        self._cache_dir = cache_dir
        self._backend: CorpusBackend | None = None

    def backend_for(self, task: BrowserTask) -> Backend:
        if self._backend is None:
            self._backend = (self.corpus.backend() if isinstance(self.corpus, DiskCorpus)
                             else CorpusBackend(self.corpus, cache_dir=self._cache_dir,
                                                persist=self._cache_dir is not None))
        return self._backend


def _rows(what: str, source: DataFiles, split: str, path: str | None) -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DatasetError(f"loading {what} needs the 'datasets' package: "
                           "pip install 'agent-envs[data]'") from e
    try:
        if path is not None:
            return datasets.load_dataset(path, split=split)
        files = ([os.fspath(source)] if isinstance(source, (str, os.PathLike))
                 else [os.fspath(f) for f in source])
        builder = "parquet" if files[0].endswith(".parquet") else "json"
        return datasets.load_dataset(builder, data_files={split: files}, split=split)
    except Exception as e:
        raise DatasetError(f"could not load {what} from {path or source!r}: "
                           f"{type(e).__name__}: {e}. Offline, pass local files "
                           "(JSONL or Parquet)") from e


def _corpus(corpus: str | os.PathLike[str] | Corpus | DiskCorpus) -> Corpus | DiskCorpus:
    if isinstance(corpus, (Corpus, DiskCorpus)):
        return corpus
    if is_index(corpus):  # an on-disk index (agent-envs corpus build): wiki-18 at full size
        return DiskCorpus(corpus)
    if os.path.isdir(corpus):
        return DiskCorpus(corpus)  # not an index: its error says how to build one
    return Corpus.from_jsonl(corpus)


def load_search_r1(data_files: DataFiles, *, corpus: str | os.PathLike[str] | Corpus,
                   split: Split = "test", path: str | None = None,
                   cache_dir: str | None = None) -> LoadedBrowserTasks:
    """Search-R1-style QA as browser tasks over a wiki corpus.

    Args:
        data_files: QA files (JSONL or Parquet) with ``question`` and ``golden_answers``.
        corpus: The corpus JSONL (or a :class:`Corpus`), or an on-disk index of it (its
            directory, or a :class:`DiskCorpus`) for corpora too big for memory.
        split: The split the tasks belong to.
        path: A dataset repo id to load instead of ``data_files`` (online).
        cache_dir: Where the BM25 index is saved.

    Raises:
        DatasetError: The data cannot be loaded or a row has no question or answer.
    """
    rows = _rows("Search-R1 QA", data_files, split, path)
    tasks = []
    for i, row in enumerate(rows):
        question = row.get("question")
        answers = row.get("golden_answers") or row.get("answers") or row.get("answer")
        if isinstance(answers, str):
            answers = [answers]
        if not question or not answers:
            raise DatasetError(f"Search-R1 row {i}: needs 'question' and 'golden_answers', got "
                               f"keys {sorted(row)}")
        answers = [str(a) for a in answers]
        source = str(row.get("data_source") or "qa")
        tasks.append(BrowserTask(
            id=f"search-r1/{source}/{split}/{row.get('id', i)}", prompt=str(question),
            answer=answers[0], aliases=tuple(answers[1:]), split=split, source="search-r1",
            meta={"data_source": source, "row": i}))
    return LoadedBrowserTasks(name="search-r1", tasks=tasks, origin=f"search-r1 ({split})",
                              corpus=_corpus(corpus), cache_dir=cache_dir)


def load_browsecomp_plus(data_files: DataFiles, *, corpus: str | os.PathLike[str] | Corpus,
                         split: Split = "test", path: str | None = None,
                         corpus_path: str | None = None,
                         cache_dir: str | None = None) -> LoadedBrowserTasks:
    """BrowseComp-Plus (decrypted queries) as browser tasks over its corpus.

    Args:
        data_files: Query files with ``query_id``, ``query``, ``answer``, ``evidence_docs``.
        corpus: The corpus as JSONL rows ``{"docid", "text", "url"}`` (or a :class:`Corpus`).
        split: The split the tasks belong to (BrowseComp-Plus has one, ``test``).
        path: Dataset repo id for the queries (online; decrypt them first).
        corpus_path: Dataset repo id for the corpus (online), instead of ``corpus``.
        cache_dir: Where the BM25 index is saved.
    """
    if isinstance(corpus, DiskCorpus) or (not isinstance(corpus, Corpus) and is_index(corpus)):
        raise DatasetError(f"BrowseComp-Plus takes its corpus JSONL, not an on-disk index "
                           f"({corpus!r}): its documents are matched to the queries' evidence "
                           "by docid as they load (100k documents fit in memory)")
    if isinstance(corpus, Corpus):
        built = corpus
    else:
        docs_rows = _rows("BrowseComp-Plus corpus", corpus, "train", corpus_path)
        docs = []
        for row in docs_rows:
            text = str(row.get("text") or "")
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            url = row.get("url") or f"https://corpus.local/doc/{row['docid']}"
            docs.append(Document(url=str(url), title=first[:120] or str(row["docid"]),
                                 text=text))
        built = Corpus(docs, name="browsecomp-plus")
    by_docid: dict[str, Document] = {}
    if not isinstance(corpus, Corpus):
        for row, doc in zip(docs_rows, built.documents):
            by_docid[str(row["docid"])] = doc
    rows = _rows("BrowseComp-Plus queries", data_files, split, path)
    tasks = []
    for i, row in enumerate(rows):
        if not row.get("query") or row.get("answer") is None:
            raise DatasetError(f"BrowseComp-Plus row {i}: needs 'query' and 'answer' "
                               f"(decrypted), got keys {sorted(row)}")
        evidence = []
        for item in row.get("evidence_docs") or row.get("gold_docs") or []:
            doc = by_docid.get(str(item["docid"] if isinstance(item, dict) else item))
            if doc is not None:
                evidence.append({"url": doc.url, "title": doc.title, "text": str(row["answer"]),
                                 "query": ""})
        tasks.append(BrowserTask(
            id=f"browsecomp-plus/{split}/{row.get('query_id', i)}", prompt=str(row["query"]),
            answer=str(row["answer"]), evidence=tuple(evidence), split=split,
            source="browsecomp-plus", meta={"row": i}))
    return LoadedBrowserTasks(name="browsecomp-plus", tasks=tasks,
                              origin=f"browsecomp-plus ({split})", corpus=built,
                              cache_dir=cache_dir)
