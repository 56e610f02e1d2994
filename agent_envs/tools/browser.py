"""The ``browser`` tool: gpt-oss's built-in browser (``browser.search``/``open``/``find``).

A backend (an offline corpus, the live web, a cassette) plus the page stack of one episode
(:class:`~agent_envs.envs.browser.tool.BrowserTool`, byte-identical to OpenAI's reference).
It is declared in the system message exactly as gpt-oss was trained with it
(openai-harmony's ``ToolNamespaceConfig.browser()``); each call is answered as
``browser.<function>`` on the call's channel. Where pages come from: the backend given to
the part, else the task source's ``backend_for(task)`` (procedural worlds, corpora).
"""

from __future__ import annotations

import json
from typing import Any

import openai_harmony as oh

from agent_envs.envs.browser.backends import Backend
from agent_envs.envs.browser.tool import BrowserResult, BrowserTool, BrowserToolConfig
from agent_envs.errors import AgentEnvsError
from agent_envs.tasks.base import Task, TaskSource
from agent_envs.tools.base import Declaration, ToolCall, ToolOutcome, ToolPart

__all__ = ["BrowserPart", "NoPagesError"]

_FUNCTIONS = ("search", "open", "find")


class NoPagesError(AgentEnvsError, ValueError):
    """The browser tool has no backend for a task (no ``backend=`` and a task source that
    serves no pages)."""


class BrowserPart(ToolPart):
    """The browser tool (see the module docstring).

    Args:
        config: The tool's settings (defaults: the reference's behaviour).
        backend: A backend for every task instead of the task source's (a ``LiveBackend``,
            a ``ReplayBackend`` over a cassette, a corpus).
    """

    name = "browser"
    config_class = BrowserToolConfig

    def __init__(self, config: BrowserToolConfig | None = None, *,
                 backend: Backend | None = None) -> None:
        self.config = config or BrowserToolConfig()
        self.backend = backend
        self.tool: BrowserTool | None = None

    def __repr__(self) -> str:
        return f"BrowserPart(backend={type(self.backend).__name__ if self.backend else None})"

    def declaration(self) -> Declaration:
        return Declaration(builtin=oh.ToolNamespaceConfig.browser())

    def recipients(self) -> list[str]:
        return [f"browser.{f}" for f in _FUNCTIONS]

    def answers(self, recipient: str) -> bool:
        return recipient == "browser" or recipient.startswith("browser.")

    def open(self, task: Task, source: TaskSource) -> None:
        """A fresh page stack over this part's backend or the task source's.

        Raises:
            NoPagesError: neither gives one.
        """
        backend = self.backend
        if backend is None:
            backend_for = getattr(source, "backend_for", None)
            if backend_for is None:
                raise NoPagesError(
                    f"the browser tool has no pages for task {task.id!r}: its task source "
                    f"{type(source).__name__} serves none. Pass backend=... (a corpus, "
                    f"LiveBackend or ReplayBackend), or use tasks whose source has pages "
                    f"(browser or research tasks)")
            backend = backend_for(task)
        self.tool = BrowserTool(backend, self.config)

    def _route(self, call: ToolCall) -> str | ToolOutcome:
        if call.recipient == "browser":  # the reference: no function, no arguments
            text = json.dumps({"error": "Invalid function arguments"})
            return ToolOutcome(text=text, ok=False, error=text, author="browser")
        if self.tool is None:
            raise RuntimeError("BrowserPart.call before open()")
        return call.recipient[len("browser."):]

    @staticmethod
    def _outcome(result: BrowserResult) -> ToolOutcome:
        return ToolOutcome(text=result.text, ok=result.ok, error=result.error,
                           infra_error=result.infra_error, author=result.author)

    def call(self, call: ToolCall) -> ToolOutcome:
        route = self._route(call)
        if isinstance(route, ToolOutcome):
            return route
        assert self.tool is not None
        return self._outcome(self.tool.call(route, call.text))

    async def acall(self, call: ToolCall) -> ToolOutcome:
        route = self._route(call)
        if isinstance(route, ToolOutcome):
            return route
        assert self.tool is not None
        return self._outcome(await self.tool.acall(route, call.text))

    def info(self) -> dict[str, Any]:
        """``cursor`` (the last page's, -1 before any) and ``pages_opened``."""
        tool = self.tool
        return {"cursor": tool.current_cursor if tool is not None else -1,
                "pages_opened": sum(v.kind == "page" for v in tool.views) if tool else 0}
