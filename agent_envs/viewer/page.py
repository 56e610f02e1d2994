"""The viewer page: one self-contained HTML file, its episodes loaded on demand.

The page holds the list (one row per episode: everything it sorts, filters and searches on), and
the decoded episodes in gzip-compressed, base64-encoded chunks of up to 32 episodes (or 256 kB of
JSON) each, in ``<script type="application/x-gzip-base64">`` blocks that the browser leaves
unparsed until an episode of that chunk is opened (``DecompressionStream`` in the page decodes
it). Prompt messages are stored once per page (see ``PartStore``), in chunks of their own; the
token table of the raw view is one more block, decoded the first time the raw view is shown. No script,
style or font is fetched from anywhere: the file opens from disk, from a published bundle, or
over ``agent-envs view --serve``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import html
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agent_envs.harmony import get_codec
from agent_envs.viewer.episode import (
    PartStore,
    TokenTable,
    episode_row,
    episode_view,
    family_of,
    first_user_text,
)
from agent_envs.viewer.source import (
    Source,
    ViewerError,
    load_source,
    missing_path_error,
    unpack_bundle,
)

__all__ = ["PageStats", "build_compare", "build_viewer", "bundle_viewer", "default_output"]

CHUNK_EPISODES = 32
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class PageStats:
    """What a page holds: counts and sizes, for the CLI and the benchmark."""

    path: Path
    episodes: int
    chunks: int
    parts: int
    html_bytes: int
    raw_json_bytes: int
    seconds: float


class _Chunks:
    """Episode views (as JSON text) packed into compressed chunks."""

    def __init__(self) -> None:
        self.blobs: list[str] = []
        self.raw_bytes = 0
        self._cur: list[str] = []
        self._cur_bytes = 0

    def add(self, text: str) -> tuple[int, int]:
        """Add one episode's JSON; returns where it lands: (chunk, slot in the chunk)."""
        self._cur.append(text)
        self._cur_bytes += len(text)
        where = (len(self.blobs), len(self._cur) - 1)
        if len(self._cur) >= CHUNK_EPISODES or self._cur_bytes >= CHUNK_BYTES:
            self.flush()
        return where

    def flush(self) -> None:
        """Close the chunk being filled."""
        if self._cur:
            raw = ("[" + ",".join(self._cur) + "]").encode()
            self.raw_bytes += len(raw)
            self.blobs.append(_pack_bytes(raw))
            self._cur, self._cur_bytes = [], 0


def _pack_bytes(raw: bytes) -> str:
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def _pack(obj: Any) -> str:
    return _pack_bytes(_dumps(obj).encode())


def default_output(path: str | Path, compare_to: str | Path | None = None) -> Path:
    """Where ``agent-envs view`` writes when not told: ``BUNDLE/viewer.html`` for a bundle or
    run directory, ``NAME.viewer.html`` beside a file, ``A/compare-B.html`` for a comparison."""
    p = Path(path)
    if compare_to is not None:
        other = Path(compare_to).name.removesuffix(".tar.gz")
        return (p if p.is_dir() else p.parent) / f"compare-{other}.html"
    if p.is_dir():
        return p / "viewer.html"
    name = p.name
    for suffix in (".tar.gz", ".jsonl.gz", ".jsonl", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(f"{name}.viewer.html")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, leave=False)


def _source_meta(src: Source) -> dict[str, Any]:
    meta: dict[str, Any] = {"path": str(src.path), "kind": src.kind,
                            "episodes": len(src.episodes)}
    if src.header:
        h = src.header
        meta.update(suite=h["suite"], policy=h["policy"], sampling=h.get("sampling"),
                    reasoning_effort=h.get("reasoning_effort"), seed=h.get("seed"),
                    trials=h.get("trials"), started_at=h.get("started_at"),
                    ended_at=h.get("ended_at"), package=h.get("package"))
    if src.metrics:
        meta["overall"] = src.metrics.get("overall", {}).get("accuracy")
        meta["excluded_infra"] = src.metrics.get("excluded_infra", {}).get("count", 0)
    return meta


def _views(src: Source, chunks: _Chunks, store: PartStore, table: TokenTable,
           rows: list[dict[str, Any]], keep: Callable[[Any], bool], bar: Any
           ) -> dict[str, list[int]]:
    """Decode the episodes ``keep`` accepts into ``chunks``/``rows``; task id -> row indices."""
    codec = get_codec()
    by_task: dict[str, list[int]] = {}
    for ep in src.episodes:
        if not keep(ep):
            continue
        view = episode_view(ep, codec, store, table)
        row = episode_row(ep, len(rows), category=src.categories.get(ep.task_id),
                          question=first_user_text(view, store))
        row["c"], row["k"] = chunks.add(_dumps(view))
        rows.append(row)
        by_task.setdefault(ep.task_id, []).append(row["i"])
        bar.update(1)
    return by_task


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere in the record (meta, a verdict): null
        return json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], chunks: _Chunks,
           store: PartStore, table: TokenTable, t0: float) -> PageStats:
    chunks.flush()
    parts = _Chunks()
    where = [parts.add(_dumps(p)) for p in store.parts]
    parts.flush()
    meta = dict(meta, chunks=len(chunks.blobs), part_chunks=len(parts.blobs), rows=len(rows),
                generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    blobs = {"index": _pack({"rows": rows, "parts": where}),
             "tokens": _pack({str(k): v for k, v in table.text.items()})}
    blobs.update({f"c{i}": b for i, b in enumerate(chunks.blobs)})
    blobs.update({f"p{i}": b for i, b in enumerate(parts.blobs)})
    page = render_page(meta, blobs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return PageStats(path=out, episodes=len(rows), chunks=len(chunks.blobs),
                     parts=len(store.parts), html_bytes=len(page.encode()),
                     raw_json_bytes=chunks.raw_bytes + parts.raw_bytes,
                     seconds=time.perf_counter() - t0)


def render_page(meta: dict[str, Any], blobs: dict[str, str]) -> str:
    """The HTML: the template with the style, the script, the page's metadata and its blobs."""
    assets = resources.files("agent_envs.viewer") / "assets"
    # JSON inside <script>: "<" escaped so no text in it can close the element.
    meta_json = _dumps(meta).replace("<", "\\u003c")
    parts = {
        "{{TITLE}}": html.escape(str(meta.get("title", "episodes"))),
        "/*{{CSS}}*/": (assets / "viewer.css").read_text(encoding="utf-8"),
        "/*{{JS}}*/": (assets / "viewer.js").read_text(encoding="utf-8"),
        "{{META}}": meta_json,
        "<!--{{DATA}}-->": "\n".join(
            f'<script type="application/x-gzip-base64" id="b-{k}">{v}</script>'
            for k, v in blobs.items()),
    }
    template = (assets / "viewer.html").read_text(encoding="utf-8")
    # One pass over the template: nothing substituted in is searched for placeholders again.
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], template)


def build_viewer(path: str | Path, out: str | Path | None = None, *,
                 progress: bool = False) -> PageStats:
    """Write the viewer page of a bundle, a run directory or an episodes file.

    Args:
        path: What to show (see :func:`agent_envs.viewer.source.load_source`).
        out: The HTML file to write (default: :func:`default_output`).
        progress: Show a progress bar while episodes are decoded.

    Raises:
        ViewerError: The path cannot be read.
    """
    t0 = time.perf_counter()
    src = load_source(path)
    table = TokenTable(get_codec())
    store = PartStore(get_codec(), table)
    chunks, rows = _Chunks(), []
    with _progress(len(src.episodes), "view: decoding episodes", progress) as bar:
        _views(src, chunks, store, table, rows, lambda ep: True, bar)
    meta = {"mode": "list", "title": src.title, "source": _source_meta(src)}
    return _write(Path(out) if out else default_output(path), meta, rows, chunks, store, table,
                  t0)


def build_compare(a: str | Path, b: str | Path, out: str | Path | None = None, *,
                  progress: bool = False) -> PageStats:
    """Write a page comparing bundle B with bundle A on the tasks that flipped (what
    ``agent-envs eval compare A B`` lists), one episode beside the other.

    Raises:
        ViewerError: A or B is not a bundle.
    """
    from agent_envs.eval.bundle import BundleError, compare

    t0 = time.perf_counter()
    with _bundle_dir(a, "A") as da, _bundle_dir(b, "B") as db:
        sa, sb = load_source(da), load_source(db)
        try:
            result = compare(da, db)
        except BundleError as e:
            raise ViewerError(str(e)) from e
    flipped = {t: "to_correct" for t in result["flipped"]["to_correct"]}
    flipped.update({t: "to_wrong" for t in result["flipped"]["to_wrong"]})
    table = TokenTable(get_codec())
    store = PartStore(get_codec(), table)
    chunks = _Chunks()
    rows: list[dict[str, Any]] = []
    total = sum(1 for s in (sa, sb) for e in s.episodes if e.task_id in flipped)
    with _progress(total, "view: decoding flipped episodes", progress) as bar:
        by_a = _views(sa, chunks, store, table, rows, lambda e: e.task_id in flipped, bar)
        by_b = _views(sb, chunks, store, table, rows, lambda e: e.task_id in flipped, bar)
    family = family_of(sa.header["suite"]["env_id"]) if sa.header else ""
    tasks = [{"task": t, "cat": sa.categories.get(t, ""), "dir": d, "family": family,
              "a": _score(rows, by_a.get(t, [])), "b": _score(rows, by_b.get(t, [])),
              "ea": by_a.get(t, []), "eb": by_b.get(t, [])}
             for t, d in flipped.items()]
    meta = {"mode": "compare", "title": f"{sa.title}  vs  {sb.title}",
            "a": dict(_source_meta(sa), path=str(a)), "b": dict(_source_meta(sb), path=str(b)),
            "tasks": tasks, "diff": result["diff"], "ci": result["ci"],
            "shared_tasks": result["shared_tasks"], "same_suite": result["same_suite"]}
    return _write(Path(out) if out else default_output(a, b), meta, rows, chunks, store, table,
                  t0)


def _score(rows: list[dict[str, Any]], idx: Iterable[int]) -> float | None:
    got = [rows[i]["verdict"] == "correct" for i in idx]
    return sum(got) / len(got) if got else None


@contextlib.contextmanager
def _bundle_dir(path: str | Path, name: str) -> Iterator[Path]:
    """A bundle directory: ``path`` itself, or its ``.tar.gz`` unpacked for the duration."""
    p = Path(path)
    if not p.exists():
        raise missing_path_error(p)
    if p.is_dir() and (p / "bundle.json").exists():
        yield p
        return
    if p.name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory(prefix="agent-envs-view-") as tmp:
            yield unpack_bundle(p, Path(tmp))
        return
    raise ViewerError(f"compare needs two eval bundles; {name} = {str(p)!r} is not one (no "
                      "bundle.json). Give two bundle directories (agent-envs eval SUITE --out "
                      "DIR) or their .tar.gz archives.")


def bundle_viewer(bundle: str | Path, *, fallback_dir: str | Path, progress: bool = False
                  ) -> Path:
    """A bundle's viewer page, ``BUNDLE/viewer.html``: written when missing or older than the
    bundle's episodes (``agent-envs eval board`` links each row to it). A bundle directory that
    cannot be written to (a published, read-only copy) gets its page in ``fallback_dir``."""
    b = Path(bundle)
    target = b / "viewer.html"
    if not os.access(b, os.W_OK):
        tag = hashlib.sha256(str(b.resolve()).encode()).hexdigest()[:8]
        target = Path(fallback_dir) / f"{b.name}-{tag}.html"
    episodes = b / "episodes.parquet"
    if target.exists() and target.stat().st_mtime >= episodes.stat().st_mtime:
        return target
    return build_viewer(b, target, progress=progress).path
