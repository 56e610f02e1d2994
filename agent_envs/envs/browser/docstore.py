"""Documents of a JSONL corpus, read on demand: an offset index into the file itself.

A 21M-passage corpus is ~13 GB of JSONL; holding it in Python takes ten times that. The
store keeps, per document (its row: the order of the lines), where its line starts and how
long it is, and a table of URL hashes sorted for lookup; all are ``.npy`` files opened
memory-mapped, so a process that serves the corpus holds only the pages it touched, and
every process on the machine shares them (the page cache) with no copy per process. A
document is one ``pread`` of its line and a JSON parse, into the same :class:`Document`
that :meth:`Corpus.from_jsonl` builds from that line; :func:`terms_text` and :func:`terms_of`
give its BM25 terms as the in-memory backend takes them.

The store is written in parts while the corpus is streamed (:class:`StoreWriter`), one part
per checkpoint of the index build, so a build that stops can resume where its last
checkpoint ended; :func:`finish_store` joins the parts and sorts the URL table.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_envs.envs.browser import corpus as _corpus_module
from agent_envs.envs.browser.corpus import CorpusError, Document, _row_document, tokenize

__all__ = ["DocumentStore", "StoreWriter", "finish_store", "parse_line", "terms_of",
           "terms_text", "url_hash"]

_STARTS, _LENGTHS, _HASHES, _ROWS, _TERMS = ("starts.npy", "lengths.npy", "url_hash.npy",
                                             "url_row.npy", "terms.npy")


def url_hash(url: str) -> int:
    """A 64-bit hash of a URL (BLAKE2b): the key of the lookup table."""
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


def parse_line(line: bytes, where: str) -> Document:
    """The :class:`Document` of one JSONL line, as :meth:`Corpus.from_jsonl` reads it.

    Raises:
        CorpusError: The line is not a JSON object, or not a document.
    """
    import orjson

    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise CorpusError(f"{where}: not valid JSON ({e}); each line must be one JSON "
                          "object") from None
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return _row_document(row, where)


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


def terms_of(lowered: str) -> list[str]:
    """``tokenize`` of an already lower-cased text (a :func:`terms_text`)."""
    stop = _corpus_module._STOP
    if stop is None:
        tokenize("")  # loads the stopword list
        stop = _corpus_module._STOP
    return [t for t in _corpus_module._TOKEN.findall(lowered) if t not in stop]


@dataclass(frozen=True, kw_only=True)
class Part:
    """One checkpoint's rows of the store (a file ``parts/NNNNNN.npz``)."""

    path: Path
    rows: int
    end_offset: int  # byte offset in the corpus just past the part's last line
    end_line: int  # line number (1-based) of that last line
    tokens: int  # BM25 tokens in the part's documents


class StoreWriter:
    """Collects rows while the corpus streams; :meth:`flush` writes them as one part."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory / "parts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._reset()

    def _reset(self) -> None:
        self.starts, self.lengths, self.hashes = array("Q"), array("I"), array("Q")
        self.terms = array("I")
        self.tokens = 0

    def __len__(self) -> int:
        return len(self.starts)

    def add(self, start: int, length: int, url: str, tokens: int) -> None:
        """Record a document's line (byte offset and length), URL and number of terms."""
        if length >= 2**32:
            raise CorpusError(f"a corpus line of {length:,} bytes at byte {start:,} is over "
                              "4 GiB; split that document")
        self.starts.append(start)
        self.lengths.append(length)
        self.hashes.append(url_hash(url))
        self.terms.append(min(tokens, 2**32 - 1))
        self.tokens += tokens

    def flush(self, end_offset: int, end_line: int) -> Part:
        """Write the collected rows as the next part (atomically) and start a new one."""
        n = len(list(self.dir.glob("*.npz")))
        path = self.dir / f"{n:06d}.npz"
        tmp = self.dir / f"{n:06d}.tmp.npz"
        np.savez(tmp, starts=np.frombuffer(self.starts, np.uint64),
                 lengths=np.frombuffer(self.lengths, np.uint32),
                 hashes=np.frombuffer(self.hashes, np.uint64),
                 terms=np.frombuffer(self.terms, np.uint32),
                 meta=np.asarray([end_offset, end_line, self.tokens], np.int64))
        _fsync(tmp)
        tmp.replace(path)
        part = Part(path=path, rows=len(self.starts), end_offset=end_offset,
                    end_line=end_line, tokens=self.tokens)
        self._reset()
        return part


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_parts(directory: Path) -> list[Part]:
    """The parts written so far, in order."""
    parts = []
    for p in sorted((directory / "parts").glob("[0-9]*.npz")):
        if ".tmp" in p.name:
            continue
        with np.load(p) as z:
            end_offset, end_line, tokens = (int(x) for x in z["meta"])
            parts.append(Part(path=p, rows=len(z["starts"]), end_offset=end_offset,
                              end_line=end_line, tokens=tokens))
    return parts


def finish_store(directory: Path, corpus: Path, parts: list[Part]) -> None:
    """Join the parts into the store's arrays and build the sorted URL table.

    Raises:
        CorpusError: Two documents share a URL (the message names both rows and the URL).
    """
    def joined(key: str, dtype: type) -> np.ndarray:
        out = []
        for p in parts:
            with np.load(p.path) as z:
                out.append(z[key])
        return np.concatenate(out).astype(dtype, copy=False) if out else np.empty(0, dtype)

    starts = joined("starts", np.uint64)
    np.save(directory / _STARTS, starts)
    np.save(directory / _LENGTHS, joined("lengths", np.uint32))
    np.save(directory / _TERMS, joined("terms", np.uint32))
    hashes = joined("hashes", np.uint64)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    del hashes
    same = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    if len(same):  # a repeated URL, or (rarely) two URLs with one 64-bit hash
        store = DocumentStore(directory, corpus, _arrays=(starts, np.load(
            directory / _LENGTHS, mmap_mode="r"), sorted_hashes, order, np.empty(0)))
        for i in same.tolist():
            a, b = sorted(int(x) for x in order[i:i + 2])
            if store.document(a).url == store.document(b).url:
                raise CorpusError(f"corpus {str(corpus)!r} has two documents with url "
                                  f"{store.document(a).url!r} (rows {a} and {b}); URLs must "
                                  "be unique")
        store.close()
    rows_dtype = np.uint32 if len(order) < 2**32 else np.uint64
    np.save(directory / _HASHES, sorted_hashes)
    np.save(directory / _ROWS, order.astype(rows_dtype))


class DocumentStore:
    """Documents by row and by URL, read from the corpus file on demand.

    Args:
        directory: The index directory holding the store's arrays.
        corpus: The JSONL corpus the offsets point into.

    Attributes:
        terms: Each document's number of BM25 terms (its length), memory-mapped.
    """

    def __init__(self, directory: str | os.PathLike[str], corpus: str | os.PathLike[str], *,
                 _arrays: tuple[np.ndarray, ...] | None = None) -> None:
        self.directory, self.corpus = Path(directory), Path(corpus)
        if _arrays is None:
            _arrays = tuple(np.load(self.directory / name, mmap_mode="r")
                            for name in (_STARTS, _LENGTHS, _HASHES, _ROWS, _TERMS))
        self._starts, self._lengths, self._hashes, self._rows, self.terms = _arrays
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self._starts)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # reopened after a fork
            try:
                self._fd = os.open(self.corpus, os.O_RDONLY)
            except OSError as e:
                raise CorpusError(f"cannot read the corpus {str(self.corpus)!r} the index at "
                                  f"{str(self.directory)!r} points into: {e}") from None
            self._pid = os.getpid()
        return self._fd

    def line(self, row: int) -> bytes:
        """The raw JSONL line of document ``row``."""
        n = len(self._starts)
        if not 0 <= row < n:
            raise IndexError(f"row {row} is out of range (the corpus has {n} documents)")
        return os.pread(self._file(), int(self._lengths[row]), int(self._starts[row]))

    def document(self, row: int) -> Document:
        """Document ``row`` (the ``row``-th non-blank line of the corpus)."""
        return parse_line(self.line(row), f"{self.corpus}: document {row}")

    def row_of(self, url: str) -> int | None:
        """The row of the document at ``url``, or None."""
        h = np.uint64(url_hash(url))
        i = int(np.searchsorted(self._hashes, h))
        while i < len(self._hashes) and self._hashes[i] == h:
            row = int(self._rows[i])
            if self.document(row).url == url:
                return row
            i += 1
        return None

    def close(self) -> None:
        """Close the corpus file. Idempotent."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:  # no module globals here: at interpreter exit they may already be None
            self.close()
        except Exception:  # noqa: BLE001, S110
            pass
