"""The corpus backend at Wikipedia scale: an on-disk BM25 index over a JSONL corpus.

:class:`~agent_envs.envs.browser.corpus.CorpusBackend` holds every document in Python and
builds its index in memory: fine for a few hundred thousand pages, ~240 GB of RAM for
Search-R1's 21M-passage wiki-18. This backend keeps both on disk:

* the documents stay in the JSONL, read on demand through an offset index
  (:class:`~agent_envs.envs.browser.docstore.DocumentStore`);
* the candidates come from a tantivy index (Rust; segments written by a writer with a
  bounded heap while the corpus streams, searched from memory-mapped files), built from the
  very terms :func:`~agent_envs.envs.browser.corpus.tokenize` makes;
* the ranking is ours: the best documents by tantivy's BM25 (k1 = 1.2 and document lengths
  rounded to a byte) are scored again with exactly the arithmetic of ``CorpusBackend``
  (bm25s's Lucene BM25, its float32 rounding, k1 = 1.5 and b = 0.75 by default, exact
  lengths), then sorted as it sorts, until a bound on the score proves that no other
  document can enter the top ``k`` (:meth:`DiskCorpusBackend.top`). The results page is
  then byte for byte the one ``CorpusBackend`` shows.

The build (:func:`~agent_envs.envs.browser.diskbuild.build_index`) streams the corpus once, in
bounded memory, and resumes from its last checkpoint when run again. Every process that opens
the index maps the same files: many env processes share one index with no copy per process.

    agent-envs corpus build wiki-18.jsonl /data/wiki-18.index
    agent-envs rollout browser --tasks search-r1:nq.jsonl --env-arg corpus=/data/wiki-18.index
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import os
import re
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

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
from agent_envs.envs.browser.docstore import DocumentStore, terms_text
from agent_envs.envs.browser.page import Page, page_from_html, page_from_text

__all__ = ["DiskCorpus", "DiskCorpusBackend", "build_index", "is_index", "write_row_runs"]

MANIFEST = "corpus-index.json"
_BUILD = "build.json"
_TERM_MAX = "term-max.json"
_ROW_RUNS = "row-runs.json"
_FORMAT = "agent-envs-corpus-index"
_VERSION = 1


def _tantivy() -> Any:
    try:
        import tantivy
    except ImportError as e:
        raise CorpusError("the on-disk corpus index needs tantivy: pip install "
                          "'agent-envs[browser-index]'") from e
    return tantivy


def is_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a built (or unfinished) corpus index."""
    p = Path(path)
    return p.is_dir() and ((p / MANIFEST).is_file() or (p / _BUILD).is_file())


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
        self._term_max: dict[str, float] | None = None
        self._runs: list[tuple[list[int], list[int]]] | None | bool = False  # False: unread
        self._fingerprint = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]

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

    def _tantivy_fingerprint(self) -> str:
        return hashlib.sha256((self.directory / "tantivy" / "meta.json").read_bytes()
                              ).hexdigest()[:16]

    def _row_runs(self) -> list[tuple[list[int], list[int]]] | None:
        if self._runs is False:
            self._runs = None
            try:
                saved = json.loads((self.directory / _ROW_RUNS).read_text())
                if saved.get("tantivy") == self._tantivy_fingerprint():
                    self._runs = [(list(map(int, d)), list(map(int, r)))
                                  for d, r in saved["segments"]]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return self._runs if isinstance(self._runs, list) else None

    def has_row_runs(self) -> bool:
        """Whether rows come from the segments' row runs (else from the fast field: run the
        build again to record them, see :func:`write_row_runs`)."""
        return self._row_runs() is not None

    def rows_of(self, searcher: Any, addresses: list[Any]) -> list[int]:
        """The corpus rows of tantivy documents (their ``DocAddress``).

        From the segments' row runs (:func:`write_row_runs`) when the index has them: a
        lookup, where asking tantivy's ``row`` fast field costs ~2 ms a call at 21M passages
        (it opens the column of every segment). Else from the fast field.
        """
        runs = self._row_runs()
        if runs is None:
            return [int(r) for r in searcher.fast_field_values("row", addresses)]
        out = []
        for a in addresses:
            docs, rows = runs[a.segment_ord]
            i = bisect.bisect_right(docs, a.doc) - 1
            out.append(rows[i] + a.doc - docs[i])
        return out

    def term_max(self, term: str) -> float:
        """tantivy's best score of any document for ``term`` alone.

        Found by a scan of the term's postings the first time, then kept in memory and in
        the index directory (``term-max.json``, for every process that opens the index; not
        written where the directory is read-only). The search asks it of common terms only.
        """
        if self._term_max is None:
            self._term_max = {}
            try:
                saved = json.loads((self.directory / _TERM_MAX).read_text())
                if saved.get("index") == self._fingerprint:
                    self._term_max = {str(t): float(v) for t, v in saved["terms"].items()}
            except (OSError, ValueError, KeyError, AttributeError):
                pass
        value = self._term_max.get(term)
        if value is None:
            tv = _tantivy()
            q = tv.Query.term_query(self.index.schema, "body", term, index_option="freq")
            hits = self.index.searcher().search(q, limit=1, count=False).hits
            value = self._term_max[term] = float(hits[0][0]) if hits else 0.0
            tmp = self.directory / f".{_TERM_MAX}.{os.getpid()}"
            try:
                tmp.write_text(json.dumps({"index": self._fingerprint,
                                           "terms": self._term_max}))
                os.replace(tmp, self.directory / _TERM_MAX)
            except OSError:
                tmp.unlink(missing_ok=True)
        return value

    def index_bytes(self) -> int:
        """Bytes on disk of the index (tantivy and the store; the corpus not counted)."""
        return sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())


#: tantivy's BM25 constants (not settable from Python).
_TANTIVY_K1, _TANTIVY_B = 1.2, 0.75


@functools.lru_cache(maxsize=256)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """A regex matching any of ``words`` as a whole word (the longest first)."""
    return re.compile(r"(?<!\w)(?:" + "|".join(
        map(re.escape, sorted(words, key=len, reverse=True))) + r")(?!\w)")


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
        common: The share of the documents above which a term is *optional*: its postings
            are only sought into, for the documents that have a rarer term (see :meth:`top`).
        seek_share: Optional terms are sought into only when the rarer terms' postings,
            times one plus the number of optional terms, are at most this share of all the
            query's postings (else the plain query of every term is cheaper).

    Attributes:
        stats: ``searches``, ``proven`` (of those, how many are provably exact),
            ``budgeted`` (how many left common terms out of tantivy's query) and
            ``candidates`` (documents scored, in all).
        bound: A document's score is at most this times its tantivy score.
    """

    def __init__(self, corpus: DiskCorpus | str | os.PathLike[str], *, k1: float = 1.5,
                 b: float = 0.75, summary_chars: int = 200, page_cache: int = 256,
                 candidates: int = 100, exact: bool = False,
                 max_candidates: int = 20_000, max_postings: int | None = None,
                 common: float = 0.01, seek_share: float = 0.25) -> None:
        self.corpus = corpus if isinstance(corpus, DiskCorpus) else DiskCorpus(corpus)
        self.source = self.corpus.name
        self.k1, self.b = float(k1), float(b)
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.candidates = int(candidates)
        self.exact, self.max_candidates = bool(exact), max(int(max_candidates), self.candidates)
        self.bound = _score_bound(self.k1, self.b)
        self._margin = self.bound * (1 + 1e-4)  # the bound with room for tantivy's float32
        self.max_postings = max_postings
        if not 0 <= common <= 1:
            raise ValueError(f"common must be a share of the documents in [0, 1], got {common}")
        self.common = float(common)
        self.seek_share = float(seek_share)
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
        pattern = _words_pattern(tuple(unique))
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

    def _most(self, term: str, n: int) -> float:
        """The most ``n`` occurrences of ``term`` in the query add to a document's score:
        its idf (a term's value never exceeds it), or ``bound`` times tantivy's best score
        for the term if that is less."""
        idf = self._idf[term]
        assert idf is not None
        most = min(idf, self._margin * self.corpus.term_max(term))
        return n * most * (1 + 1e-6)  # float32 rounding of the terms' values

    def candidates_of(self, query: str, k: int) -> tuple[list[int], list[float], bool]:
        """The rows of the ``k`` best documents by tantivy's BM25 for ``query``'s terms,
        their tantivy scores (best first), and whether they are all the documents that
        have a term of the query."""
        return self._engine(Counter(tokenize(query)), k)

    def _engine(self, counts: Counter[str] | dict[str, int], k: int,
                optional: dict[str, int] | None = None
                ) -> tuple[list[int], list[float], bool]:
        """tantivy's ``k`` best for the union of ``counts``' terms (each boosted by its count
        in the query); with ``optional``, only documents having one of ``counts``' terms,
        scored with the ``optional`` terms too (tantivy seeks into their postings for those
        documents instead of scoring every one of them)."""
        tv = _tantivy()
        if not counts:
            return [], [], True
        searcher = self._search_handle()
        schema = self.corpus.index.schema

        def clauses_of(terms: dict[str, int]) -> list[tuple[Any, Any]]:
            out = []
            for term, n in terms.items():
                q = tv.Query.term_query(schema, "body", term, index_option="freq")
                out.append((tv.Occur.Should, q if n == 1 else tv.Query.boost_query(q, n)))
            return out

        query = tv.Query.boolean_query(clauses_of(counts))
        for clause in clauses_of(optional or {}):
            # One optional term per level: a required clause with a single optional term
            # seeks it through its skip list, where a union of several would score whole
            # windows of their postings at every seek.
            query = tv.Query.boolean_query([(tv.Occur.Must, query), clause])
        hits = searcher.search(query, limit=k, count=False).hits
        if not hits:
            return [], [], True
        rows = self.corpus.rows_of(searcher, [a for _, a in hits])
        return rows, [float(h[0]) for h in hits], len(hits) < k

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, score)`` pairs, best first (ties broken by row), scored as
        ``CorpusBackend`` scores.

        Candidates come from tantivy's BM25 and are scored exactly, best first, until the
        rest cannot reach the ``k``-th exact score: a document scores at most ``bound``
        times its tantivy score, and at most the sum of the idfs of the terms it has. When
        that is proven, the answer is ``CorpusBackend``'s, which :attr:`stats` counts
        (``proven``).

        tantivy's Python binding scores every posting of every term it is asked for (it
        collects through a ``MultiCollector``, which turns off block-max WAND), so a query's
        common terms are the cost. The search splits the terms as MaxScore does: the
        *optional* ones are the common ones (in more than ``common`` of the documents, never
        the rarest term); no document without an *essential* term scores more than ``slack``,
        what the optional terms add at most (:meth:`_most`). tantivy is asked for the documents that
        have an essential term, scored with every term: it seeks into the optional terms'
        postings for those documents instead of scoring all of them (worth it when the
        essential postings are few enough: ``seek_share``). If the ``k``-th exact score is
        not above ``slack``, nothing is proven that way, and the plain query of every term
        runs. When the candidates run out before a proof, the answer is the best among
        them; ``exact=True`` grows the candidates (x4, up to ``max_candidates``) until the
        answer is proven.

        Given a ``max_postings`` budget (and not ``exact``), when the terms have more
        postings than that together, the most common ones are left out of tantivy's query
        altogether (they still count in the exact score, and each adds what it can at most to
        the bound) and there is one stage: such a search counts in ``stats`` as
        ``budgeted``, and as proven only if the bound shows it; it misses documents that
        rank on the common terms (``benchmarks/browser.py --passages`` measures how many).
        """
        if k <= 0:
            return []
        if len(self._idf) > 65536:  # a bounded cache of the terms' statistics
            self._idf.clear()
            self._df.clear()
        counts = Counter(t for t in tokenize(query) if self._idf_of(t) is not None)
        if not counts:
            return []
        limit = max(k, self.candidates)
        if self.max_postings is not None and not self.exact:
            terms, slack = dict(counts), 0.0
            postings = sum(self._df[t] for t in counts)
            for t in sorted(counts, key=lambda t: (-self._df[t], t))[:-1]:
                if postings <= self.max_postings:
                    break
                del terms[t]
                postings -= self._df[t]
                slack += self._most(t, counts[t])
            rows, scores, proven = self._rank(query, terms, {}, slack, k, limit, stage=1)
            self._count(proven, slack > 0, len(scores))
            return self._best(rows, scores, k)
        rarest_first = sorted(counts, key=lambda t: (self._df[t], t))
        common = self.common * self.corpus.documents
        split = next((i for i, t in enumerate(rarest_first) if i and self._df[t] > common),
                     len(rarest_first))
        plans = [len(rarest_first)]  # every term essential: tantivy's plain query
        essential_postings = sum(self._df[t] for t in rarest_first[:split])
        all_postings = sum(self._df[t] for t in rarest_first)
        if (split < len(rarest_first) and essential_postings * (1 + len(rarest_first) - split)
                <= all_postings * self.seek_share):
            plans.insert(0, split)  # each optional term costs a seek per essential posting
        scored = 0
        for split in plans:
            essential = {t: counts[t] for t in rarest_first[:split]}
            optional = {t: counts[t] for t in rarest_first[split:]}
            slack = sum(self._most(t, n) for t, n in optional.items())
            while True:
                rows, scores, proven = self._rank(query, essential, optional, slack, k,
                                                  limit, stage=2)
                scored += len(scores)
                if proven or not self.exact or limit >= self.max_candidates:
                    break
                if optional and self._kth(scores, k) <= slack:
                    break  # more candidates cannot prove it: every term must be essential
                limit = min(limit * 4, self.max_candidates)
            if proven or self._kth(scores, k) > slack:
                break  # proven, or the candidates ran out (the best of them is the answer)
        self._count(proven, False, scored)
        return self._best(rows, scores, k)

    def _count(self, proven: bool, budgeted: bool, scored: int) -> None:
        self.stats["searches"] += 1
        self.stats["proven"] += proven
        self.stats["budgeted"] += budgeted
        self.stats["candidates"] += scored

    @staticmethod
    def _kth(scores: np.ndarray, k: int) -> float:
        return (float(np.partition(scores, len(scores) - k)[len(scores) - k])
                if len(scores) >= k else -math.inf)

    @staticmethod
    def _best(rows: list[int], scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        order = sorted((i for i in range(len(scores)) if scores[i] > 0),
                       key=lambda i: (-float(scores[i]), rows[i]))[:k]
        return [(rows[i], float(scores[i])) for i in order]

    def _rank(self, query: str, terms: dict[str, int], optional: dict[str, int],
              slack: float, k: int, limit: int, stage: int
              ) -> tuple[list[int], np.ndarray, bool]:
        """Score tantivy's best ``limit`` exactly (with all of the query's terms), best
        first, until the rest (those and every other document) provably cannot reach the
        ``k``-th score. No document without one of ``terms`` scores over ``slack``. Stage 1
        ranks by ``terms`` alone (a candidate's score is then at most ``bound`` times its
        tantivy score plus ``slack``); stage 2 ranks the documents having one of ``terms``
        by ``terms`` and ``optional`` (at most ``bound`` times their tantivy score)."""
        rows, tscores, complete = self._engine(terms, limit, optional if stage == 2 else None)
        margin = self._margin  # tantivy's float32 idf and lengths
        add = slack if stage == 1 else 0.0

        def outside(t: float) -> float:  # the most a document ranked under ``t`` scores
            return margin * t + add if stage == 1 else max(margin * t, slack)

        scores = np.zeros(0, dtype=np.float32)
        i, kth = 0, -math.inf
        while i < len(rows):
            if outside(tscores[i]) < kth:  # no one from here on reaches the k-th
                return rows[:i], scores, True
            j = min(len(rows), i + (k + 8 if i == 0 else 32))
            scores = np.concatenate([scores, self.score_rows(query, rows[i:j])])
            i = j
            kth = self._kth(scores, k)
        # Every candidate is scored. A document that is not one has none of ``terms`` (at
        # most ``slack``) when they are complete, else a tantivy score under the last one's.
        last = outside(tscores[-1]) if rows and not complete else slack
        return rows, scores, kth > last or (complete and not optional and slack == 0)

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


def write_row_runs(corpus: DiskCorpus, *, chunk: int = 200_000) -> bool:
    """Record where each tantivy segment's documents sit among the corpus rows.

    A segment holds a few runs of consecutive documents with consecutive rows (the writer
    adds rows in order; merges concatenate segments). Every document's row is read once
    from the ``row`` fast field (~12 s at 21M passages), the runs are kept in
    ``row-runs.json`` for :meth:`DiskCorpus.rows_of`, and only if the rows are each row of
    the corpus once. Returns whether they were written.
    """
    tv = _tantivy()
    meta = json.loads((corpus.directory / "tantivy" / "meta.json").read_text())
    searcher = corpus.index.searcher()
    seen = np.zeros(corpus.documents, dtype=bool)
    segments = []
    for ordinal, seg in enumerate(meta["segments"]):
        if seg.get("deletes"):
            return False
        n = int(seg["max_doc"])
        rows = np.empty(n, dtype=np.int64)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            rows[a:b] = searcher.fast_field_values(
                "row", [tv.DocAddress(ordinal, d) for d in range(a, b)])
        if n and (rows.min() < 0 or rows.max() >= corpus.documents):
            return False
        seen[rows] = True
        starts = np.flatnonzero(np.diff(rows - np.arange(n))) + 1 if n else np.zeros(0, int)
        docs = [0, *starts.tolist()] if n else []
        segments.append([docs, [int(rows[d]) for d in docs]])
    if sum(int(s["max_doc"]) for s in meta["segments"]) != corpus.documents or not seen.all():
        return False
    tmp = corpus.directory / f".{_ROW_RUNS}.{os.getpid()}"
    tmp.write_text(json.dumps({"tantivy": corpus._tantivy_fingerprint(), "segments": segments}))
    os.replace(tmp, corpus.directory / _ROW_RUNS)
    corpus._runs = False  # read again
    return True


# The build lives in its own module and needs the names above; imported last, it is
# importable from here too (``from agent_envs.envs.browser.diskindex import build_index``).
from agent_envs.envs.browser.diskbuild import build_index
