"""The offline ``corpus`` backend: BM25 search (bm25s) over a fixed set of documents.

A corpus is a JSONL file of ``{"url", "title", "html" | "text"}`` (``"contents"`` with a
quoted title on its first line, as in the Search-R1 wiki dumps, and ``"id"`` work too), a
folder of ``.html``/``.htm``/``.md``/``.txt`` files, or documents built in code. The BM25
index is built once, saved under the cache directory keyed by a hash of the corpus and the
index settings, and loaded memory-mapped after that.

Search results pages are built as the reference's backends build theirs (an HTML list of
``title``, ``url`` and a summary, converted with the page code), so they render exactly as
gpt-oss saw in training; the summary is the passage of the document around the first query
term, or its opening.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_envs.envs.browser.backends import (
    VIEW_SOURCE_PREFIX,
    Backend,
    BackendError,
    SearchHit,
    results_page,
)
from agent_envs.envs.browser.page import Page, page_from_html, page_from_text
from agent_envs.errors import AgentEnvsError

__all__ = ["Corpus", "CorpusBackend", "CorpusError", "Document", "default_cache_dir",
           "summary_of", "tokenize"]

_INDEX_VERSION = "1"
_TOKEN = re.compile(r"\w+", re.UNICODE)
_TAGS = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?])")  # "<b>Name</b>, ..." -> "Name, ..."


class CorpusError(AgentEnvsError, ValueError):
    """A corpus file or folder is malformed (the message names the file, line and fix)."""


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN
    return frozenset(STOPWORDS_EN)


_STOP: frozenset[str] | None = None


def tokenize(text: str) -> list[str]:
    """BM25 terms: lower-cased word characters, English stopwords dropped."""
    global _STOP
    if _STOP is None:
        _STOP = _stopwords()
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def default_cache_dir() -> Path:
    """``$AGENT_ENVS_CACHE/browser``, else ``~/.cache/agent-envs/browser``."""
    base = os.environ.get("AGENT_ENVS_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "agent-envs"
    return root / "browser"


@dataclass(frozen=True, kw_only=True)
class Document:
    """One corpus document.

    Attributes:
        url: Its address (unique in the corpus).
        title: Its title ("" to take the HTML ``<title>``).
        html: The HTML source, or None for a text document.
        text: The plain text (for text documents; for HTML, optional search text).
    """

    url: str
    title: str = ""
    html: str | None = None
    text: str | None = None

    def search_text(self) -> str:
        """The text BM25 indexes and summaries quote: title, then the body without tags."""
        if self.html is not None and self.text is None:
            body = html_lib.unescape(_TAGS.sub(" ", _HIDDEN.sub(" ", self.html)))
        else:
            body = self.text or ""
        return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACE.sub(" ", body)).strip()


class Corpus:
    """Documents by URL, in a fixed order (the BM25 document ids).

    Args:
        documents: The documents; URLs must be unique.
        name: What the backend calls this source.
        fingerprint: A stable id of the content for the index cache (default: a hash of
            every document).
    """

    def __init__(self, documents: Sequence[Document], *, name: str = "corpus",
                 fingerprint: str | None = None) -> None:
        self.documents = list(documents)
        self.name = name
        self._by_url: dict[str, int] = {}
        for i, doc in enumerate(self.documents):
            if doc.url in self._by_url:
                raise CorpusError(f"corpus {name!r} has two documents with url {doc.url!r} "
                                  f"(#{self._by_url[doc.url]} and #{i}); URLs must be unique")
            self._by_url[doc.url] = i
        self._fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, url: str) -> Document | None:
        """The document at ``url``, or None."""
        i = self._by_url.get(url)
        return None if i is None else self.documents[i]

    @property
    def fingerprint(self) -> str:
        """A hash of the content (computed once)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for d in self.documents:
                for part in (d.url, d.title, d.html or "", d.text or ""):
                    h.update(part.encode("utf-8", "surrogatepass"))
                    h.update(b"\x00")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], *, name: str | None = None) -> Corpus:
        """Read ``{"url", "title", "html"|"text"}`` lines (or ``{"id", "contents"}``).

        Raises:
            CorpusError: The file is missing, a line is not a JSON object, or a line has
                neither ``html``, ``text`` nor ``contents``.
        """
        p = Path(path)
        if not p.is_file():
            raise CorpusError(f"corpus file {str(p)!r} does not exist; pass a JSONL file of "
                              '{"url", "title", "html" or "text"} objects')
        docs = []
        with p.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise CorpusError(f"{p}:{n}: not valid JSON ({e}); each line must be one "
                                      "JSON object") from None
                if not isinstance(row, dict):
                    raise CorpusError(f"{p}:{n}: expected a JSON object, got "
                                      f"{type(row).__name__}")
                docs.append(_row_document(row, f"{p}:{n}"))
        h = hashlib.sha256(p.read_bytes()).hexdigest()
        return cls(docs, name=name or p.stem, fingerprint=h)

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], *, base_url: str = "file://",
                    name: str | None = None) -> Corpus:
        """Every ``.html``/``.htm``/``.md``/``.txt`` file under ``path`` (sorted).

        URLs are ``base_url`` + the path relative to the folder (default: ``file://`` +
        the absolute path). Text files take their first non-empty line as the title.
        """
        root = Path(path)
        if not root.is_dir():
            raise CorpusError(f"corpus folder {str(root)!r} does not exist or is not a folder")
        docs = []
        for f in sorted(root.rglob("*")):
            suffix = f.suffix.lower()
            if not f.is_file() or suffix not in (".html", ".htm", ".md", ".txt"):
                continue
            content = f.read_text(encoding="utf-8", errors="replace")
            url = (f"file://{f.resolve()}" if base_url == "file://"
                   else base_url.rstrip("/") + "/" + f.relative_to(root).as_posix())
            if suffix in (".html", ".htm"):
                docs.append(Document(url=url, html=content))
            else:
                first = next((ln.strip().lstrip("#").strip() for ln in content.splitlines()
                              if ln.strip()), f.stem)
                docs.append(Document(url=url, title=first, text=content))
        if not docs:
            raise CorpusError(f"corpus folder {str(root)!r} has no .html, .htm, .md or .txt "
                              "files")
        return cls(docs, name=name or root.name)


def _row_document(row: dict, where: str) -> Document:
    url = row.get("url")
    title = row.get("title") or ""
    if "contents" in row and "html" not in row and "text" not in row:
        contents = str(row["contents"])
        first, _, rest = contents.partition("\n")
        if not title and first.startswith('"') and first.endswith('"'):
            title, contents = first[1:-1], rest
        if url is None and "id" in row:
            url = f"https://corpus.local/doc/{row['id']}"
        return Document(url=str(url), title=str(title), text=contents)
    if url is None:
        if "id" not in row:
            raise CorpusError(f"{where}: a document needs a 'url' (or an 'id')")
        url = f"https://corpus.local/doc/{row['id']}"
    if row.get("html") is not None:
        return Document(url=str(url), title=str(title), html=str(row["html"]))
    if row.get("text") is not None:
        return Document(url=str(url), title=str(title), text=str(row["text"]))
    raise CorpusError(f"{where}: a document needs 'html' or 'text' (or 'contents'); got keys "
                      f"{sorted(row)}")


class CorpusBackend(Backend):
    """BM25 search and page fetches over a :class:`Corpus`.

    Args:
        corpus: A :class:`Corpus`, or a path to a JSONL file or a folder.
        cache_dir: Where indexes are saved (default :func:`default_cache_dir`); None with
            ``persist=False`` keeps the index in memory only.
        persist: Save the index and load it memory-mapped next time.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        summary_chars: Length of the summary under each result.
        page_cache: Converted pages kept in memory (LRU).
    """

    def __init__(self, corpus: Corpus | str | os.PathLike[str], *,
                 cache_dir: str | os.PathLike[str] | None = None, persist: bool = True,
                 k1: float = 1.5, b: float = 0.75, summary_chars: int = 200,
                 page_cache: int = 256) -> None:
        if not isinstance(corpus, Corpus):
            p = Path(corpus)
            corpus = Corpus.from_folder(p) if p.is_dir() else Corpus.from_jsonl(p)
        if len(corpus) == 0:
            raise CorpusError(f"corpus {corpus.name!r} is empty; it needs at least one document")
        self.corpus = corpus
        self.source = corpus.name
        self.k1, self.b = float(k1), float(b)
        self.summary_chars = int(summary_chars)
        self._texts: OrderedDict[int, str] = OrderedDict()  # search texts of recent hits
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._page_cache = int(page_cache)
        self.index_dir: Path | None = None
        self.loaded_from_cache = False
        self._retriever = self._load_or_build(cache_dir, persist)
        vocab = self._retriever.vocab_dict
        self._vocab: dict[str, int] = vocab
        scores = self._retriever.scores
        self._data, self._indices, self._indptr = scores["data"], scores["indices"], \
            scores["indptr"]

    # -- the index ------------------------------------------------------------------

    def _load_or_build(self, cache_dir: str | os.PathLike[str] | None, persist: bool):
        import bm25s

        key = hashlib.sha256(f"{_INDEX_VERSION}|{self.corpus.fingerprint}|{self.k1}|{self.b}"
                             .encode()).hexdigest()[:24]
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = directory / f"bm25-{key}"
        if persist and (target / "params.index.json").is_file():
            self.index_dir = target
            self.loaded_from_cache = True
            return bm25s.BM25.load(str(target), mmap=True, show_progress=False)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, csc_backend="numpy")
        docs = [tokenize(f"{d.title} {d.search_text()}") for d in self.corpus.documents]
        retriever.index(docs, show_progress=False)
        if persist:
            tmp = directory / f"bm25-{key}.tmp{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            retriever.save(str(tmp), show_progress=False)
            try:
                tmp.rename(target)
            except OSError:  # another process saved it first
                pass
            self.index_dir = target
            if (target / "params.index.json").is_file():
                return bm25s.BM25.load(str(target), mmap=True, show_progress=False)
        return retriever

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float32)."""
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        out = np.zeros(len(self.corpus), dtype=np.float32)
        for t in ids:
            lo, hi = int(self._indptr[t]), int(self._indptr[t + 1])
            _accumulate(out, self._indices[lo:hi], self._data[lo:hi])
        return out

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(document index, score)`` pairs with a positive score, best first
        (ties broken by document order)."""
        s = self.scores(query)
        positive = int(np.count_nonzero(s > 0))
        k = min(k, positive)
        if k <= 0:
            return []
        if k < len(s):
            kth = s[np.argpartition(-s, k - 1)[k - 1]]
            above = np.flatnonzero(s > kth)  # fewer than k; the rest tie at the k-th score,
            idx = np.concatenate([above, np.flatnonzero(s == kth)[:k - len(above)]])  # first
        else:
            idx = np.arange(len(s))
        order = sorted(idx.tolist(), key=lambda i: (-float(s[i]), i))[:k]
        return [(i, float(s[i])) for i in order]

    # -- Backend ------------------------------------------------------------------------

    def search(self, query: str, topn: int) -> Page:
        hits = []
        pattern = _terms_pattern(query)
        for i, _score in self.top(query, topn):
            doc = self.corpus.documents[i]
            hits.append(SearchHit(url=doc.url, title=doc.title or _title_of(doc),
                                  summary=self._summary(self._text(i), pattern)))
        return results_page(query, hits)

    def fetch(self, url: str) -> Page:
        url = url.removeprefix(VIEW_SOURCE_PREFIX)
        page = self._pages.get(url)
        if page is not None:
            self._pages.move_to_end(url)
            return page
        doc = self.corpus.get(url)
        if doc is None:
            raise BackendError(f"No contents returned for {url}")
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
        doc = self.corpus.get(url)
        if doc is None:
            raise BackendError(f"No contents returned for {url}")
        return doc.html if doc.html is not None else (doc.text or "")

    def _text(self, i: int) -> str:
        text = self._texts.get(i)
        if text is None:
            text = self.corpus.documents[i].search_text()
            self._texts[i] = text
            if len(self._texts) > 4096:
                self._texts.popitem(last=False)
        return text

    def _summary(self, text: str, pattern: re.Pattern[str] | None) -> str:
        return summary_of(text, pattern, self.summary_chars)


def summary_of(text: str, pattern: re.Pattern[str] | None, n: int) -> str:
    """A result's summary: ``n`` characters of its search text around the first query term
    (``pattern``), or its opening; cut at a space, with ``...`` where text was left out."""
    start = 0
    if pattern is not None:
        m = pattern.search(text)
        if m is not None and m.start() > n // 3:
            start = text.rfind(" ", 0, m.start() - n // 3) + 1
    piece = text[start: start + n]
    if start + n < len(text):
        cut = piece.rfind(" ")
        piece = (piece[:cut] if cut > n // 2 else piece) + " ..."
    return ("... " if start else "") + piece


def _accumulate(out: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    # Each term's posting list has each document at most once, so fancy-index add is exact.
    out[rows] += values


#: Longest query term used to place a result's summary: no word is longer, and compiling a
#: megabyte-long term into the pattern takes seconds.
_MAX_TERM_CHARS = 100


def _terms_pattern(query: str) -> re.Pattern[str] | None:
    terms = sorted({t for t in tokenize(query) if len(t) <= _MAX_TERM_CHARS}, key=len,
                   reverse=True)
    if not terms:
        return None
    return re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)


def _title_of(doc: Document) -> str:
    if doc.html is not None:
        m = re.search(r"<title[^>]*>(.*?)</title>", doc.html, re.IGNORECASE | re.DOTALL)
        if m:
            return html_lib.unescape(_SPACE.sub(" ", m.group(1))).strip()
    return doc.url


def documents_from(rows: Iterable[dict]) -> list[Document]:
    """Documents from dicts with ``url``, ``title`` and ``html`` or ``text``."""
    return [_row_document(r, f"row {i}") for i, r in enumerate(rows)]
