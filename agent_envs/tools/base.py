"""One small interface for a tool an env offers the model: :class:`ToolPart`.

gpt-oss meets its tools in two places of the prompt: the built-in ones (``browser``,
``python``) are declared in the system message, developer functions in the developer
message as ``namespace functions``. It calls them by recipient (``to=python``,
``to=browser.search``, ``to=functions.NAME``) and each call is answered by a tool message.
A :class:`ToolPart` is one such tool inside an env:

* :meth:`~ToolPart.declaration`: what it adds to the prompt (a builtin namespace, or
  developer functions);
* :meth:`~ToolPart.answers` / :meth:`~ToolPart.recipients`: the recipients it serves;
* :meth:`~ToolPart.call` / :meth:`~ToolPart.acall`: one call, sync and async, always an
  outcome (a model's mistake is an outcome with ``ok=False``; only an infrastructure fault
  sets ``infra_error``);
* :meth:`~ToolPart.open` / :meth:`~ToolPart.close` / :meth:`~ToolPart.aclose`: per-episode
  resources (a sandbox session, a page stack, a toolset bound to fresh instances);
* :meth:`~ToolPart.info`: what it adds to ``info`` under its :attr:`~ToolPart.name`.

:class:`~agent_envs.core.HarmonyEnv` composes a list of parts and routes each call to the
first part that answers its recipient; a recipient no part answers gets an error that names
every tool the env has.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import openai_harmony as oh

if TYPE_CHECKING:
    from agent_envs.tasks.base import Task, TaskSource

__all__ = ["Declaration", "ToolCall", "ToolOutcome", "ToolPart"]


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """A tool call the model made: the last message of its completion.

    Attributes:
        recipient: Who it is addressed to (``python``, ``browser.search``, ``functions.f``).
        channel: The message's channel (the result comes back on it).
        content_type: ``code``, ``<|constrain|>json`` or None.
        text: The message's text (code, or JSON arguments).
        skipped: Recipients of earlier calls in the same completion, which are not run
            (only the last message of a completion can be answered in place).
    """

    recipient: str
    channel: str | None
    content_type: str | None
    text: str
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ToolOutcome:
    """What a tool call produced.

    Attributes:
        text: The tool message the model sees.
        ok: The call did what was asked (code ran without raising, ...).
        error: Short description of what the model did wrong, if anything.
        timed_out: The call hit its time limit.
        infra_error: Set when the tool failed for reasons that are not the
            model's; the episode then ends and is flagged.
        duration_s: Wall-clock seconds of the call.
        author: Who the result message is from (defaults to the recipient).
    """

    text: str
    ok: bool
    error: str | None = None
    timed_out: bool = False
    infra_error: str | None = None
    duration_s: float = 0.0
    author: str | None = None


@dataclass(frozen=True, kw_only=True)
class Declaration:
    """What a tool adds to the prompt.

    Attributes:
        builtin: A built-in tool's namespace for the system message (``python``,
            ``browser``), or None.
        functions: Developer functions for the developer message's ``namespace functions``
            (``{"name", "description", "parameters"}`` dicts), in declaration order.
    """

    builtin: oh.ToolNamespaceConfig | None = None
    functions: tuple[dict[str, Any], ...] = field(default=())


class ToolPart(abc.ABC):
    """A tool inside an env (see the module docstring).

    Subclasses set :attr:`name` and :attr:`config_class`, and implement
    :meth:`declaration`, :meth:`recipients` and :meth:`call`. A part is made once per env;
    :meth:`open` starts each episode (after the previous one was closed).
    """

    #: Short name: the key of its ``info`` entry and its name in ``tools=[...]``.
    name: ClassVar[str] = ""
    #: Its settings dataclass: the env takes this class's fields as keyword arguments.
    config_class: ClassVar[type | None] = None
    #: Whether a completion that holds several calls is a model mistake worth reporting for
    #: this tool (the env then counts it and the part says which calls did not run).
    reports_skipped_calls: ClassVar[bool] = False

    @abc.abstractmethod
    def declaration(self) -> Declaration:
        """What the tool adds to the system or developer message (after :meth:`open`)."""

    @abc.abstractmethod
    def recipients(self) -> list[str]:
        """The recipients it answers, as the model should write them (for error messages)."""

    def answers(self, recipient: str) -> bool:
        """Whether calls to ``recipient`` are this tool's (default: one of
        :meth:`recipients`)."""
        return recipient in self.recipients()

    def open(self, task: Task, source: TaskSource) -> None:
        """Start an episode on ``task`` from ``source`` (called while the prompt is built)."""

    @abc.abstractmethod
    def call(self, call: ToolCall) -> ToolOutcome:
        """Run one call. Never raises for the model's mistakes: they are outcomes."""

    async def acall(self, call: ToolCall) -> ToolOutcome:
        """Async twin of :meth:`call` (default: the sync call)."""
        return self.call(call)

    def close(self) -> None:
        """Release the episode's resources. Idempotent."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def info(self) -> dict[str, Any] | None:
        """What the tool adds to ``info`` under :attr:`name` (None: nothing)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
