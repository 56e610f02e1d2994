"""The corpus backend at Wikipedia scale: an on-disk BM25 index over a JSONL corpus.

:class:`~agent_envs.envs.browser.corpus.CorpusBackend` holds every document in Python and
builds its index in memory: fine for a few hundred thousand pages, ~240 GB of RAM for
Search-R1's 21M-passage wiki-18. This backend keeps both on disk:

* the documents stay in the JSONL, read on demand through an offset index
  (:class:`~agent_envs.envs.browser.docstore.DocumentStore`);
* the candidates come from a tantivy index (Rust; segments written by a writer with a
  bounded heap while the corpus streams, searched from memory-mapped files with block-max
  WAND), built from the very terms :func:`~agent_envs.envs.browser.corpus.tokenize` makes;
* the ranking is ours: the ``candidates`` best documents by tantivy's BM25 (k1 = 1.2 and
  document lengths rounded to a byte) are scored again with exactly the arithmetic of
  ``CorpusBackend`` (bm25s's Lucene BM25, its float32 rounding, k1 = 1.5 and b = 0.75 by
  default, exact lengths), then sorted as it sorts. The results page of a search is then
  byte for byte the one ``CorpusBackend`` shows whenever its top results are among the
  candidates (``benchmarks/browser.py --passages`` measures how often: overlap@20).

The build streams the corpus once (:func:`build_index`), in bounded memory, commits a
checkpoint every ``checkpoint`` documents, and resumes from the last one when run again.
Every process that opens the index maps the same files: many env processes share one index
with no copy per process.

    agent-envs corpus build wiki-18.jsonl /data/wiki-18.index
    agent-envs rollout browser --tasks search-r1:nq.jsonl --env-arg corpus=/data/wiki-18.index
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agent_envs.envs.browser import corpus as _corpus_module
from agent_envs.envs.browser.backends import (
    VIEW_SOURCE_PREFIX,
    Backend,
    BackendError,
    SearchHit,
    results_page,
)
from agent_envs.envs.browser.corpus import (
    CorpusError,
    Document,
    _terms_pattern,
    _title_of,
    summary_of,
    tokenize,
)
from agent_envs.envs.browser.docstore import (
    DocumentStore,
    StoreWriter,
    finish_store,
    parse_line,
    read_parts,
)
from agent_envs.envs.browser.page import Page, page_from_html, page_from_text

__all__ = ["DiskCorpus", "DiskCorpusBackend", "build_index", "is_index"]

MANIFEST = "corpus-index.json"
_BUILD = "build.json"
_FORMAT = "agent-envs-corpus-index"
_VERSION = 1


def _tantivy() -> Any:
    try:
        import tantivy
    except ImportError as e:
        raise CorpusError("the on-disk corpus index needs tantivy: pip install "
                          "'agent-envs[browser-index]'") from e
    return tantivy


def _schema() -> Any:
    tv = _tantivy()
    sb = tv.SchemaBuilder()
    # Our terms, joined by spaces: \w+ terms never hold whitespace, so the whitespace
    # tokenizer gives back exactly tokenize()'s terms. Term frequencies, no positions.
    sb.add_text_field("body", tokenizer_name="whitespace", index_option="freq")
    sb.add_unsigned_field("row", fast=True, indexed=False, stored=False)
    return sb.build()


def terms_text(doc: Document) -> str:
    """The lower-cased text whose ``\\w+`` runs, stopwords dropped, are the document's BM25
    terms: ``tokenize(terms_text(doc)) == tokenize(f"{doc.title} {doc.search_text()}")``.

    For a text document, search_text() only changes whitespace, which never joins or
    splits a ``\\w+`` run, and ``str.lower`` depends on context only for a capital sigma;
    so the raw text gives the same terms without building the search text.
    """
    raw = doc.text or ""
    if doc.html is None and "\u03a3" not in raw and "\u03a3" not in doc.title:
        return f"{doc.title} {raw}".lower()
    return f"{doc.title} {doc.search_text()}".lower()


def _terms(lowered: str) -> list[str]:
    """``tokenize`` of an already lower-cased text."""
    stop = _corpus_module._STOP
    if stop is None:
        tokenize("")  # loads the stopword list
        stop = _corpus_module._STOP
    return [t for t in _corpus_module._TOKEN.findall(lowered) if t not in stop]


#: A line of the corpus to index: (start byte, end byte, line number, the line).
_Line = tuple[int, int, int, bytes]
#: What indexing needs of it: (start, end, line number, length, url, terms, term count).
_Parsed = tuple[int, int, int, int, str, str, int]


def _parse_lines(chunk: tuple[str, list[_Line]]) -> list[_Parsed]:
    """Parse and tokenize a chunk of lines (in a worker process when ``workers > 1``)."""
    source, lines = chunk
    out = []
    for start, end, line_no, body in lines:
        doc = parse_line(body, f"{source}:{line_no}")
        terms = _terms(terms_text(doc))
        out.append((start, end, line_no, len(body), doc.url, " ".join(terms), len(terms)))
    return out


def _chunks(f: Any, source: str, offset: int, line_no: int, size: int
            ) -> Iterator[tuple[str, list[_Line]]]:
    """The non-blank lines from ``offset`` on, in chunks of ``size``."""
    pos, chunk = offset, []
    for raw in f:
        start, pos = pos, pos + len(raw)
        line_no += 1
        body = raw.rstrip(b"\r\n")
        if body.strip():
            chunk.append((start, pos, line_no, body))
            if len(chunk) >= size:
                yield source, chunk
                chunk = []
    if chunk:
        yield source, chunk


def is_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a built (or unfinished) corpus index."""
    p = Path(path)
    return p.is_dir() and ((p / MANIFEST).is_file() or (p / _BUILD).is_file())


def _corpus_stamp(corpus: Path) -> dict[str, Any]:
    st = corpus.stat()
    return {"corpus": str(corpus), "corpus_bytes": st.st_size, "corpus_mtime_ns": st.st_mtime_ns}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def build_index(corpus: str | os.PathLike[str], directory: str | os.PathLike[str], *,
                heap_mb: int = 256, threads: int = 1, checkpoint: int = 500_000,
                workers: int = 1, restart: bool = False, progress: bool = True,
                on_checkpoint: Callable[[int], None] | None = None) -> DiskCorpus:
    """Index a JSONL corpus into ``directory`` (resumable; returns the opened index).

    Streams the corpus once: each line is read as :meth:`Corpus.from_jsonl` reads it, its
    terms go to a tantivy writer whose heap is capped at ``heap_mb`` (it writes a segment
    each time the heap fills), and its offset and URL to the document store. Every
    ``checkpoint`` documents the store's part is written and the index committed; run again
    after a stop, it goes on from the last checkpoint. A finished index is returned as is.

    Args:
        corpus: The JSONL corpus (``{"url", "title", "html"|"text"}`` or ``{"id",
            "contents"}`` lines); the index points into it, so keep it where it is.
        directory: Where the index goes (created).
        heap_mb: The tantivy writer's memory budget, all threads together (>= 16 per thread).
        threads: Indexing threads of the writer.
        workers: Processes that parse and tokenize the corpus (1: this one).
        checkpoint: Documents between commits (what a resumed build may redo at most).
        restart: Delete whatever is in ``directory`` and build from the start.
        progress: Show a progress bar (on stderr).
        on_checkpoint: Called with the documents indexed so far after each commit.

    Raises:
        CorpusError: The corpus is missing or malformed (file and line named), two documents
            share a URL, or ``directory`` holds a build of another corpus.
    """
    tv = _tantivy()
    src, out = Path(corpus).resolve(), Path(directory)
    if not src.is_file():
        raise CorpusError(f"corpus file {str(src)!r} does not exist; pass a JSONL file of "
                          '{"url", "title", "html" or "text"} (or {"id", "contents"}) objects')
    if heap_mb < 16 * threads:
        raise ValueError(f"heap_mb={heap_mb} is too small for threads={threads}: tantivy "
                         f"needs at least 16 MB per thread; use heap_mb >= {16 * threads}")
    if checkpoint < 1:
        raise ValueError(f"checkpoint must be >= 1 document, got {checkpoint}")
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got workers={workers}, "
                         f"threads={threads}")
    stamp = _corpus_stamp(src)
    if restart and out.exists():
        shutil.rmtree(out)
    if (out / MANIFEST).is_file():
        return DiskCorpus(out)  # checks it is this corpus, unchanged
    if out.exists() and any(out.iterdir()) and not (out / _BUILD).is_file():
        raise CorpusError(f"{str(out)!r} exists and is not a corpus index; pick an empty or "
                          "new directory")
    out.mkdir(parents=True, exist_ok=True)
    build = out / _BUILD
    if build.is_file():
        started = json.loads(build.read_text())
        if {k: started.get(k) for k in stamp} != stamp:
            raise CorpusError(f"{str(out)!r} holds an unfinished build of "
                              f"{started.get('corpus')!r} as it was then, not of {str(src)!r} "
                              "as it is now; pass restart=True (--restart) to start over")
    else:
        _write_json(build, {"format": _FORMAT, "version": _VERSION, **stamp,
                            "started": time.time()})

    pool = None
    if workers > 1:  # forked before tantivy starts its threads
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(workers)
    index = tv.Index(_schema(), path=str(_tantivy_dir(out)), reuse=True)
    index.reload()
    committed = index.searcher().num_docs
    parts = _reconcile(out, read_parts(out), committed)
    row = sum(p.rows for p in parts)
    offset = parts[-1].end_offset if parts else 0
    line_no = parts[-1].end_line if parts else 0
    writer = index.writer(heap_size=heap_mb * 2**20, num_threads=threads)
    store = StoreWriter(out)
    bar = _progress(progress, stamp["corpus_bytes"], offset, src.name, row)
    t_last, end = time.perf_counter(), offset
    try:
        with src.open("rb") as f:
            f.seek(offset)
            chunks = _chunks(f, str(src), offset, line_no, 1024)
            parsed = (pool.imap(_parse_lines, chunks, chunksize=1) if pool is not None
                      else map(_parse_lines, chunks))
            for batch in parsed:
                for start, end, line_no, length, url, terms, n in batch:
                    tdoc = tv.Document()
                    tdoc.add_text("body", terms)
                    tdoc.add_unsigned("row", row)
                    writer.add_document(tdoc)
                    store.add(start, length, url, n)
                    row += 1
                    if len(store) >= checkpoint:
                        parts.append(store.flush(end, line_no))  # the part first: _reconcile
                        writer.commit()
                        if on_checkpoint is not None:
                            on_checkpoint(row)
                if bar is not None and time.perf_counter() - t_last > 0.5:
                    bar.update(end - bar.n)
                    bar.set_postfix(docs=f"{row:,}", refresh=False)
                    t_last = time.perf_counter()
    finally:
        if pool is not None:
            pool.terminate()
    if len(store):
        parts.append(store.flush(end, line_no))
    writer.commit()
    if bar is not None:
        bar.update(stamp["corpus_bytes"] - bar.n)
        bar.close()
    if progress:
        print(f"[corpus build] {row:,} documents indexed; waiting for segment merges ...",
              file=sys.stderr, flush=True)
    writer.wait_merging_threads()
    if row == 0:
        raise CorpusError(f"corpus {str(src)!r} has no documents")
    if progress:
        print("[corpus build] writing the document store and its URL table ...",
              file=sys.stderr, flush=True)
    finish_store(out, src, parts)
    tokens = sum(p.tokens for p in parts)
    started = json.loads(build.read_text())
    _write_json(out / MANIFEST, {
        "format": _FORMAT, "version": _VERSION, **stamp, "name": src.stem, "documents": row,
        "tokens": tokens, "avgdl": tokens / row, "engine": "tantivy",
        "tantivy": _package_version("tantivy"), "heap_mb": heap_mb, "threads": threads,
        "build_s": round(time.time() - started["started"], 1)})
    shutil.rmtree(out / "parts")
    build.unlink()
    return DiskCorpus(out)


def _tantivy_dir(out: Path) -> Path:
    d = out / "tantivy"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _package_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def _reconcile(out: Path, parts: list, committed: int) -> list:
    """The parts the index's last commit covers (later ones are dropped: not committed)."""
    kept, rows = [], 0
    for p in parts:
        if rows + p.rows > committed:
            break
        kept.append(p)
        rows += p.rows
    if rows != committed:
        raise CorpusError(f"the unfinished build in {str(out)!r} is inconsistent (the index "
                          f"has {committed} documents, the store's checkpoints {rows}); pass "
                          "restart=True (--restart) to start over")
    for p in parts[len(kept):]:
        p.path.unlink()
    return kept


def _progress(on: bool, total: int, initial: int, name: str, rows: int) -> Any:
    if not on:
        return None
    from tqdm import tqdm
    if initial:
        print(f"[corpus build] resuming {name} at document {rows:,} (byte {initial:,})",
              file=sys.stderr, flush=True)
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"indexing {name}", file=sys.stderr, mininterval=1.0)


_Doc = tuple[Document, str]


class DiskCorpus:
    """A built corpus index: the document store, the tantivy index and their statistics.

    Args:
        directory: The index directory (made by :func:`build_index`).
        corpus: The corpus JSONL, if it has moved since the build (default: where it was).

    Raises:
        CorpusError: ``directory`` is not a finished index, or the corpus changed since.
    """

    def __init__(self, directory: str | os.PathLike[str], *,
                 corpus: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            if (self.directory / _BUILD).is_file():
                raise CorpusError(f"the corpus index at {str(self.directory)!r} is not "
                                  "finished; run the build again to resume it (agent-envs "
                                  "corpus build CORPUS DIR)")
            raise CorpusError(f"{str(self.directory)!r} is not a corpus index (no {MANIFEST});"
                              " build one with: agent-envs corpus build CORPUS.jsonl DIR")
        meta = json.loads(manifest.read_text())
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise CorpusError(f"{str(manifest)!r} is format {meta.get('format')!r} version "
                              f"{meta.get('version')!r}; this code reads {_FORMAT!r} version "
                              f"{_VERSION}: rebuild the index")
        self.meta = meta
        self.corpus_path = Path(corpus) if corpus is not None else Path(meta["corpus"])
        if not self.corpus_path.is_file():
            raise CorpusError(f"the corpus {str(self.corpus_path)!r} of the index at "
                              f"{str(self.directory)!r} is missing; pass corpus= with where "
                              "it is now")
        st = self.corpus_path.stat()
        if st.st_size != meta["corpus_bytes"]:
            raise CorpusError(f"the corpus {str(self.corpus_path)!r} is {st.st_size:,} bytes, "
                              f"not the {meta['corpus_bytes']:,} it was indexed at; rebuild "
                              "the index (agent-envs corpus build --restart)")
        self.name: str = meta["name"]
        self.documents: int = meta["documents"]
        self.avgdl: float = meta["avgdl"]
        self._store: DocumentStore | None = None
        self._index: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return self.documents

    def __repr__(self) -> str:
        return (f"DiskCorpus({str(self.directory)!r}: {self.documents:,} documents of "
                f"{str(self.corpus_path)!r})")

    @property
    def store(self) -> DocumentStore:
        """The document store (opened on first use, again in a forked child)."""
        self._check_pid()
        if self._store is None:
            self._store = DocumentStore(self.directory, self.corpus_path)
        return self._store

    @property
    def index(self) -> Any:
        """The tantivy index (opened on first use, again in a forked child)."""
        self._check_pid()
        if self._index is None:
            self._index = _tantivy().Index.open(str(self.directory / "tantivy"))
        return self._index

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._store = self._index = None
            self._pid = os.getpid()

    def get(self, url: str) -> Document | None:
        """The document at ``url``, or None."""
        row = self.store.row_of(url)
        return None if row is None else self.store.document(row)

    def backend(self, **kwargs: Any) -> DiskCorpusBackend:
        """A :class:`DiskCorpusBackend` over this index."""
        return DiskCorpusBackend(self, **kwargs)

    def index_bytes(self) -> int:
        """Bytes on disk of the index (tantivy and the store; the corpus not counted)."""
        return sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())


#: tantivy's BM25 constants (not settable from Python).
_TANTIVY_K1, _TANTIVY_B = 1.2, 0.75


def _score_bound(k1: float, b: float) -> float:
    """U with score(doc) <= U * tantivy_score(doc) for every document.

    Per term, ours is idf * tf / (tf + k1 * (1 - b + b * x)) and tantivy's
    idf * (1 + K1) * tf / (tf + K1 * (1 - B + B * x')), with x = dl / avgdl and x' <= x
    (tantivy rounds lengths down to a byte code; same idf, same average). Their ratio is
    at most max(1, K1 (1 - B + B x) / (k1 (1 - b + b x))) / (1 + K1), and the ratio of
    the two lines in x is largest at x = 0 or x -> infinity.
    """
    worst = 1.0
    if b < 1:
        worst = max(worst, _TANTIVY_K1 * (1 - _TANTIVY_B) / (k1 * (1 - b)))
    else:
        worst = math.inf
    if b > 0:
        worst = max(worst, _TANTIVY_K1 * _TANTIVY_B / (k1 * b))
    else:
        worst = math.inf
    return worst / (1 + _TANTIVY_K1)


class DiskCorpusBackend(Backend):
    """BM25 search and page fetches over a :class:`DiskCorpus`.

    Args:
        corpus: A :class:`DiskCorpus` or its directory.
        k1: BM25 term-frequency saturation (as ``CorpusBackend``).
        b: BM25 length normalisation (as ``CorpusBackend``).
        summary_chars: Length of the summary under each result.
        page_cache: Converted pages kept in memory (LRU).
        candidates: Documents taken from tantivy's ranking and scored again exactly (at
            least the number of results asked for).
        exact: Take more candidates until the ranking is provably ``CorpusBackend``'s
            (see :meth:`top`).
        max_candidates: The most candidates ``exact`` takes.
        max_postings: A latency budget: the postings a search asks tantivy to score, at
            most, unless that leaves no term or ``exact`` is set (None: no budget; see
            :meth:`top` for what it costs in ranking).

    Attributes:
        stats: ``searches``, ``proven`` (of those, how many are provably exact),
            ``budgeted`` (how many left common terms out of tantivy's query) and
            ``candidates`` (documents scored, in all).
        bound: A document's score is at most this times its tantivy score.
    """

    def __init__(self, corpus: DiskCorpus | str | os.PathLike[str], *, k1: float = 1.5,
                 b: float = 0.75, summary_chars: int = 200, page_cache: int = 256,
                 candidates: int = 100, exact: bool = False,
                 max_candidates: int = 20_000, max_postings: int | None = None) -> None:
        self.corpus = corpus if isinstance(corpus, DiskCorpus) else DiskCorpus(corpus)
        self.source = self.corpus.name
        self.k1, self.b = float(k1), float(b)
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.candidates = int(candidates)
        self.exact, self.max_candidates = bool(exact), max(int(max_candidates), self.candidates)
        self.bound = _score_bound(self.k1, self.b)
        self.max_postings = max_postings
        self.stats = {"searches": 0, "proven": 0, "budgeted": 0, "candidates": 0}
        self._texts: OrderedDict[int, str] = OrderedDict()
        self.summary_chars = int(summary_chars)
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._page_cache = int(page_cache)
        self._docs: OrderedDict[int, _Doc] = OrderedDict()
        self._idf: dict[str, float | None] = {}
        self._df: dict[str, int] = {}
        self._searcher: Any = None
        self._pid = -1

    def _search_handle(self) -> Any:
        if self._searcher is None or self._pid != os.getpid():
            self._searcher = self.corpus.index.searcher()
            self._pid = os.getpid()
            self._idf.clear()
            self._df.clear()
        return self._searcher

    # -- ranking --------------------------------------------------------------------------

    def _doc(self, row: int) -> _Doc:
        """Document ``row``, and the lower-cased text its terms were taken from (LRU)."""
        hit = self._docs.get(row)
        if hit is not None:
            self._docs.move_to_end(row)
            return hit
        doc = self.corpus.store.document(row)
        hit = (doc, terms_text(doc))
        self._docs[row] = hit
        if len(self._docs) > 4096:
            self._docs.popitem(last=False)
        return hit

    def _search_text(self, row: int) -> str:
        text = self._texts.get(row)
        if text is None:
            text = self._doc(row)[0].search_text()
            self._texts[row] = text
            if len(self._texts) > 1024:
                self._texts.popitem(last=False)
        return text

    def _idf_of(self, term: str) -> float | None:
        """The term's idf as bm25s stores it (float32), or None when no document has it."""
        if term not in self._idf:
            df = self._search_handle().doc_freq("body", term)
            n = self.corpus.documents
            self._idf[term] = (float(np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5))))
                               if df else None)
            self._df[term] = df
        return self._idf[term]

    def score_rows(self, query: str, rows: list[int]) -> np.ndarray:
        """The BM25 score of each of ``rows`` for ``query`` (float32), computed as
        ``CorpusBackend`` computes it: bm25s's per-term values, in its order of float64
        operations rounded to float32, summed in float32 in the query's term order."""
        terms = [t for t in tokenize(query) if self._idf_of(t) is not None]
        out = np.zeros(len(rows), dtype=np.float32)
        if not terms or not rows:
            return out
        unique = list(dict.fromkeys(terms))
        column = {t: j for j, t in enumerate(unique)}
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(
            map(re.escape, sorted(unique, key=len, reverse=True))) + r")(?!\w)")
        tf = np.zeros((len(rows), len(unique)), dtype=np.float64)
        for i, row in enumerate(rows):
            for t, n in Counter(pattern.findall(self._doc(row)[1])).items():
                tf[i, column[t]] = n
        dl = np.asarray(self.corpus.store.terms[np.asarray(rows)], dtype=np.float64)
        norm = self.k1 * ((1 - self.b) + self.b * dl / self.corpus.avgdl)
        idf = np.asarray([self._idf[t] for t in unique], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            values = (idf * (tf / (norm[:, None] + tf))).astype(np.float32)
        values[tf == 0] = 0
        for t in terms:
            out += values[:, column[t]]
        return out

    def candidates_of(self, query: str, k: int) -> tuple[list[int], list[float], bool]:
        """The rows of the ``k`` best documents by tantivy's BM25 for ``query``'s terms,
        their tantivy scores (best first), and whether they are all the documents that
        have a term of the query."""
        return self._engine(Counter(tokenize(query)), k)

    def _engine(self, counts: Counter[str] | dict[str, int], k: int
                ) -> tuple[list[int], list[float], bool]:
        tv = _tantivy()
        if not counts:
            return [], [], True
        searcher = self._search_handle()
        schema = self.corpus.index.schema
        clauses = []
        for term, n in counts.items():
            q = tv.Query.term_query(schema, "body", term, index_option="freq")
            clauses.append((tv.Occur.Should, q if n == 1 else tv.Query.boost_query(q, n)))
        hits = searcher.search(tv.Query.boolean_query(clauses), limit=k, count=False).hits
        if not hits:
            return [], [], True
        rows = [int(r) for r in searcher.fast_field_values("row", [a for _, a in hits])]
        return rows, [float(h[0]) for h in hits], len(hits) < k

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, score)`` pairs, best first (ties broken by row), scored as
        ``CorpusBackend`` scores.

        The ``candidates`` best documents by tantivy's BM25 are scored exactly, best first,
        until the rest cannot reach the ``k``-th score: a document scores at most
        ``bound`` times its tantivy score, so once ``bound`` times a candidate's tantivy
        score is below the ``k``-th exact score, neither it, the candidates after it nor
        any other document can enter the top ``k``. The answer is then provably
        ``CorpusBackend``'s, which :attr:`stats` counts (``proven``).

        tantivy's Python binding scores every posting of every term it is asked for (it
        collects through a ``MultiCollector``, which turns off block-max WAND), so a
        query's most common terms are the cost. Given a ``max_postings`` budget, when the
        terms have more postings than that together, the most common ones are left out of
        tantivy's query (they still count in the exact score, and each adds at most its
        idf to the bound): such a search counts in ``stats`` as ``budgeted``, and as
        proven only if the bound shows it; it misses documents that rank on the common
        terms (``benchmarks/browser.py --passages`` measures how many). When the candidates run out before the proof, the answer is the best
        among them. ``exact=True`` asks tantivy for every term and grows the candidates
        (x4, up to ``max_candidates``) until the answer is proven.
        """
        if k <= 0:
            return []
        if len(self._idf) > 65536:  # a bounded cache of the terms' statistics
            self._idf.clear()
            self._df.clear()
        counts = Counter(t for t in tokenize(query) if self._idf_of(t) is not None)
        if not counts:
            return []
        terms, slack = dict(counts), 0.0
        if self.max_postings is not None and not self.exact:
            postings = sum(self._df[t] for t in counts)
            for t in sorted(counts, key=lambda t: (-self._df[t], t))[:-1]:
                if postings <= self.max_postings:
                    break
                del terms[t]
                postings -= self._df[t]
                slack += counts[t] * self._idf[t]  # type: ignore[operator]
            slack *= 1 + 1e-6  # a term's float32 value never exceeds its idf (float32)
        limit, scored = max(k, self.candidates), 0
        while True:
            rows, scores, proven = self._rank(query, terms, slack, k, limit)
            scored += len(scores)
            if proven or not self.exact or limit >= self.max_candidates:
                break
            limit = min(limit * 4, self.max_candidates)
        self.stats["searches"] += 1
        self.stats["proven"] += proven
        self.stats["budgeted"] += slack > 0
        self.stats["candidates"] += scored
        order = sorted((i for i in range(len(scores)) if scores[i] > 0),
                       key=lambda i: (-float(scores[i]), rows[i]))[:k]
        return [(rows[i], float(scores[i])) for i in order]

    def _rank(self, query: str, terms: dict[str, int], slack: float, k: int, limit: int
              ) -> tuple[list[int], np.ndarray, bool]:
        """Score tantivy's best ``limit`` for ``terms`` exactly (with all of the query's
        terms), best first, until the rest (those and every other document) provably cannot
        reach the ``k``-th score; ``slack`` bounds what the terms left out can add."""
        rows, tscores, complete = self._engine(terms, limit)
        margin = self.bound * (1 + 1e-4)  # tantivy's float32 idf and lengths
        scores = np.zeros(0, dtype=np.float32)
        i, kth = 0, -math.inf
        while i < len(rows):
            if margin * tscores[i] + slack < kth:  # no one from here on reaches the k-th
                return rows[:i], scores, True
            j = min(len(rows), i + (k + 8 if i == 0 else 32))
            scores = np.concatenate([scores, self.score_rows(query, rows[i:j])])
            i = j
            if len(scores) >= k:
                kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
        # Every candidate is scored. A document that is not one has none of ``terms`` when
        # they are complete, else a tantivy score under the last candidate's.
        outside = slack + (0.0 if complete else margin * tscores[-1])
        return rows, scores, (complete and slack == 0) or kth > outside

    # -- Backend ---------------------------------------------------------------------------

    def search(self, query: str, topn: int) -> Page:
        pattern = _terms_pattern(query)
        hits = []
        for row, _score in self.top(query, topn):
            doc = self._doc(row)[0]
            hits.append(SearchHit(url=doc.url, title=doc.title or _title_of(doc),
                                  summary=summary_of(self._search_text(row), pattern,
                                                     self.summary_chars)))
        return results_page(query, hits)

    def _document(self, url: str) -> Document:
        row = self.corpus.store.row_of(url)
        if row is None:
            raise BackendError(f"No contents returned for {url}")
        return self._doc(row)[0]

    def fetch(self, url: str) -> Page:
        url = url.removeprefix(VIEW_SOURCE_PREFIX)
        page = self._pages.get(url)
        if page is not None:
            self._pages.move_to_end(url)
            return page
        doc = self._document(url)
        if doc.html is not None:
            try:
                page = page_from_html(doc.html, doc.url, doc.title, display_urls=True)
            except Exception as e:  # lxml's ParserError on an empty document, as live pages
                raise BackendError(str(e)) from e
        else:
            page = page_from_text(doc.text or "", doc.url, doc.title or _title_of(doc))
        self._pages[url] = page
        if len(self._pages) > self._page_cache:
            self._pages.popitem(last=False)
        return page

    def fetch_source(self, url: str) -> str:
        """The document's source (HTML or text), for ``raw_view_source``."""
        doc = self._document(url)
        return doc.html if doc.html is not None else (doc.text or "")

    def close(self) -> None:
        self._searcher = None
        self._docs.clear()
        self._texts.clear()
        self._pages.clear()
