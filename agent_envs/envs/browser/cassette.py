"""Record a live browsing session to a cassette file and replay it offline, byte for byte.

A cassette is JSONL, one line per backend call: ``{"op": "search"|"fetch", "key": query or
url, "topn": n, "page": {...}}`` or ``{..., "error": "message"}``. Pages are stored as the
backend returned them (already converted), so a replay shows exactly the recorded text.
Errors the model saw (a 404, a failed search) are recorded and replayed as the same
errors. A request missing from the cassette in replay is an infrastructure fault
(:class:`BackendUnavailable`): the episode is flagged, not scored.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from agent_envs.envs.browser.backends import Backend, BackendError, BackendUnavailable
from agent_envs.envs.browser.page import Page, Snippet

__all__ = ["RecordingBackend", "ReplayBackend", "page_from_dict", "page_to_dict"]


def page_to_dict(page: Page) -> dict[str, Any]:
    """A page as JSON-ready data."""
    out: dict[str, Any] = {"url": page.url, "title": page.title, "text": page.text,
                           "urls": page.urls}
    if page.snippets is not None:
        out["snippets"] = {k: {"url": s.url, "text": s.text, "title": s.title,
                               "line_idx": s.line_idx} for k, s in page.snippets.items()}
    return out


def page_from_dict(data: dict[str, Any]) -> Page:
    """The inverse of :func:`page_to_dict`."""
    snippets = data.get("snippets")
    return Page(url=data["url"], title=data["title"], text=data["text"],
                urls=dict(data.get("urls", {})),
                snippets=None if snippets is None else
                {k: Snippet(**v) for k, v in snippets.items()})


def _key(op: str, key: str, topn: int | None) -> str:
    return json.dumps([op, key, topn], ensure_ascii=False)


class RecordingBackend(Backend):
    """Pass calls to ``inner`` and append each one (result or error) to ``path``.

    Args:
        inner: The backend that answers (usually a ``LiveBackend``).
        path: The cassette file (appended to; created with its folders).
    """

    def __init__(self, inner: Backend, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.source = inner.source
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _record(self, op: str, key: str, topn: int | None, page: Page | None,
                error: Exception | None) -> None:
        base = {"op": op, "key": key, "topn": topn}
        if isinstance(error, BackendUnavailable):
            return  # infra faults are not part of the session
        if error is not None:
            self._write({**base, "error": str(error)})
        else:
            assert page is not None
            self._write({**base, "page": page_to_dict(page)})

    def search(self, query: str, topn: int) -> Page:
        try:
            page = self.inner.search(query, topn)
        except Exception as e:
            self._record("search", query, topn, None, e)
            raise
        self._record("search", query, topn, page, None)
        return page

    def fetch(self, url: str) -> Page:
        try:
            page = self.inner.fetch(url)
        except Exception as e:
            self._record("fetch", url, None, None, e)
            raise
        self._record("fetch", url, None, page, None)
        return page

    async def asearch(self, query: str, topn: int) -> Page:
        try:
            page = await self.inner.asearch(query, topn)
        except Exception as e:
            self._record("search", query, topn, None, e)
            raise
        self._record("search", query, topn, page, None)
        return page

    async def afetch(self, url: str) -> Page:
        try:
            page = await self.inner.afetch(url)
        except Exception as e:
            self._record("fetch", url, None, None, e)
            raise
        self._record("fetch", url, None, page, None)
        return page

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayBackend(Backend):
    """Answer from a cassette; no network.

    Args:
        path: The cassette file.
        source: What to call this source.

    Raises:
        FileNotFoundError: No cassette at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], *, source: str = "web") -> None:
        self.path = Path(path)
        self.source = source
        if not self.path.is_file():
            raise FileNotFoundError(f"no cassette at {str(self.path)!r}; record one with "
                                    "RecordingBackend(LiveBackend(...), path)")
        self._entries: dict[str, dict[str, Any]] = {}
        with self.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self._entries[_key(rec["op"], rec["key"], rec["topn"])] = rec
                except (ValueError, KeyError) as e:
                    raise ValueError(f"{self.path}:{n}: not a cassette record ({e})") from None

    def _replay(self, op: str, key: str, topn: int | None) -> Page:
        rec = self._entries.get(_key(op, key, topn))
        if rec is None:
            raise BackendUnavailable(f"cassette {self.path.name} has no {op} for {key!r}"
                                     + (f" (topn={topn})" if topn is not None else "")
                                     + "; record the session again")
        if "error" in rec:
            raise BackendError(rec["error"])
        return page_from_dict(rec["page"])

    def search(self, query: str, topn: int) -> Page:
        return self._replay("search", query, topn)

    def fetch(self, url: str) -> Page:
        return self._replay("fetch", url, None)
