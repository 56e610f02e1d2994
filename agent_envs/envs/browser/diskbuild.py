"""Building the on-disk corpus index (:func:`build_index`, ``agent-envs corpus build``).

The corpus is streamed once, in bounded memory: each line is parsed as
:meth:`~agent_envs.envs.browser.corpus.Corpus.from_jsonl` parses it, its terms go to a tantivy
writer whose heap is capped, and its offset, URL and length to the document store
(:mod:`~agent_envs.envs.browser.docstore`). Every ``checkpoint`` documents the store's part is
written and then the index committed; run again after a stop, the build goes on from the last
commit (a part written but not committed is dropped). The index is then opened as a
:class:`~agent_envs.envs.browser.diskindex.DiskCorpus`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from agent_envs.envs.browser.corpus import CorpusError
from agent_envs.envs.browser.diskindex import (
    _BUILD,
    _FORMAT,
    _ROW_RUNS,
    _VERSION,
    MANIFEST,
    DiskCorpus,
    _tantivy,
    write_row_runs,
)
from agent_envs.envs.browser.docstore import (
    StoreWriter,
    finish_store,
    parse_line,
    read_parts,
    terms_of,
    terms_text,
)

__all__ = ["build_index"]


def _schema() -> Any:
    tv = _tantivy()
    sb = tv.SchemaBuilder()
    # Our terms, joined by spaces: \w+ terms never hold whitespace, so the whitespace
    # tokenizer gives back exactly tokenize()'s terms. Term frequencies, no positions.
    sb.add_text_field("body", tokenizer_name="whitespace", index_option="freq")
    sb.add_unsigned_field("row", fast=True, indexed=False, stored=False)
    return sb.build()


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
        terms = terms_of(terms_text(doc))
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


def _in_order(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any], window: int
              ) -> Iterator[Any]:
    """``fn`` of each item, computed by ``pool``, in order, with at most ``window`` items in
    flight: the corpus is read only as fast as the index takes its documents.

    (``Pool.imap`` reads its input as fast as the workers parse it and keeps every result the
    caller has not taken yet: when the writer is the slower side, as on a busy machine, the
    parsed corpus piles up in memory, about a gigabyte per million passages.)
    """
    pending: deque[Any] = deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


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
        done = DiskCorpus(out)  # checks it is this corpus, unchanged
        if not (out / _ROW_RUNS).is_file():  # an index built before the runs were kept
            write_row_runs(done)
        return done
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
            parsed = (_in_order(pool, _parse_lines, chunks, 4 * workers) if pool is not None
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
    if progress:
        print("[corpus build] recording where the segments' documents sit ...",
              file=sys.stderr, flush=True)
    done = DiskCorpus(out)
    write_row_runs(done)
    build.unlink()
    return done


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
