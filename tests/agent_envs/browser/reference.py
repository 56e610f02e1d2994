"""The reference browser tool (OpenAI's ``gpt-oss`` package) as a test-only oracle.

It runs offline: tiktoken's cache is seeded with the harmony vocabulary (conftest.py), and
its Exa backend is subclassed so that ``_post`` answers from in-memory fixtures instead of
the network. The reference's own code builds every page, results page and error text.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def seed_tiktoken_cache(cache_dir: Path, vocab_dir: Path) -> None:
    """Put o200k_base.tiktoken where tiktoken looks before downloading it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(O200K_URL.encode()).hexdigest()
    shutil.copyfile(vocab_dir / "o200k_base.tiktoken", cache_dir / key)


_FIXTURES: dict[str, tuple[dict[str, tuple[str, str]], dict[str, list[tuple[str, str, str]]]]] = {}


def make_reference_tool(pages: dict[str, tuple[str, str]],
                        hits: dict[str, list[tuple[str, str, str]]], **kwargs: Any) -> Any:
    """A ``SimpleBrowserTool`` whose backend serves ``pages`` and ``hits``."""
    import chz
    from gpt_oss.tools.simple_browser import SimpleBrowserTool
    from gpt_oss.tools.simple_browser.backend import ExaBackend

    @chz.chz
    class FixtureExa(ExaBackend):
        async def _post(self, session: Any, endpoint: str, payload: dict) -> dict:
            pages, hits = _FIXTURES[self.source]
            if endpoint == "/search":
                if payload["query"] not in hits:
                    raise RuntimeError(f"no results for {payload['query']}")
                return {"results": [{"title": t, "url": u, "summary": s}
                                    for t, u, s in hits[payload["query"]]]}
            url = payload["urls"][0]
            if url not in pages:
                return {"results": []}
            html, title = pages[url]
            return {"results": [{"text": html, "title": title}]}

    key = f"fixtures-{len(_FIXTURES)}"
    _FIXTURES[key] = (pages, hits)
    return SimpleBrowserTool(backend=FixtureExa(source=key), **kwargs)


def reference_call(tool: Any, function: str, arguments: str) -> str:
    """The text of the reference tool's answer to ``browser.<function>``; raises what it raises."""
    from openai_harmony import Message, Role

    msg = Message.from_role_and_content(Role.ASSISTANT, arguments).with_recipient(
        f"browser.{function}")

    async def run() -> list[Any]:
        return [m async for m in tool.process(msg)]

    out = asyncio.run(run())
    assert len(out) == 1
    return out[0].content[0].text


def vocab_dir() -> Path:
    return Path(os.environ["TIKTOKEN_ENCODINGS_BASE"])
