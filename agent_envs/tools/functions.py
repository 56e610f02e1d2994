"""The ``functions`` tool: developer functions, declared in the developer message.

A toolset (:class:`~agent_envs.envs.functions.tools.ToolSet`) per episode: the task's own
tools (a ``FunctionsTask`` brings them, bound to fresh instances) and the user's (callables,
``Tool`` objects, JSON Schema dicts, classes or ``StatefulTools``). They are declared as
``namespace functions`` (rendered by openai-harmony) and called as
``to=functions.NAME<|constrain|>json``. Each call is parsed, validated against the
function's schema before it runs, run with a time limit and answered by ``functions.NAME``;
every failure is such a message and is counted in ``info["functions"]["errors"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent_envs.envs.functions.runtime import CallRecord, FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import StatefulTools, Tool, ToolSet, tool, tool_from_schema
from agent_envs.tasks.base import Task, TaskSource
from agent_envs.tools.base import Declaration, ToolCall, ToolOutcome, ToolPart

__all__ = ["FunctionsPart", "ToolLike", "as_tool"]

ToolLike = Callable[..., Any] | Tool | StatefulTools | Mapping[str, Any]


def as_tool(item: Any) -> Tool | StatefulTools:
    """A user's tool as a :class:`Tool` (or :class:`StatefulTools` for a class).

    Raises:
        TypeError: ``item`` is none of the accepted kinds.
    """
    if isinstance(item, (Tool, StatefulTools)):
        return item
    if isinstance(item, type):
        return StatefulTools(item)
    if isinstance(item, Mapping):
        spec = dict(item)
        fn = spec.pop("fn", None)
        return tool_from_schema(spec, fn)
    if callable(item):
        return tool(item)
    raise TypeError(f"tools must be callables, Tool, StatefulTools, classes or schema dicts; "
                    f"got {type(item).__name__}: {item!r:.100}")


class FunctionsPart(ToolPart):
    """Developer functions (see the module docstring).

    Args:
        config: How calls are checked and run.
        tools: The user's own tools, available in every episode.

    Attributes:
        episode: This episode's tools, stateful instances and calls (the verifier reads it).
        toolset: The tools the model sees, by harmony name.
        turn: The user turn calls are recorded under (multi-turn tasks advance it).
        errors: Failed calls by kind (``json``, ``schema``, ``not_run``, ...).
    """

    name = "functions"
    config_class = RunnerConfig
    reports_skipped_calls = True

    def __init__(self, config: RunnerConfig | None = None, *,
                 tools: Sequence[ToolLike] = ()) -> None:
        self.config = config or RunnerConfig()
        self.user_tools = [as_tool(t) for t in tools]
        self.episode = EpisodeState(())
        self.toolset = ToolSet(())
        self.runner = FunctionRunner(self.toolset, self.config)
        self.turn = 0
        self.errors: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"FunctionsPart(tools={len(self.user_tools)})"

    def open(self, task: Task, source: TaskSource) -> None:
        """The task's tools (fresh instances) and the user's, in a new toolset."""
        episode = task.episode() if isinstance(task, FunctionsTask) else EpisodeState(())
        for item in self.user_tools:
            if isinstance(item, StatefulTools):
                inst, bound = item.bind()
                episode.tools.extend(bound)
                episode.instances.setdefault(item.cls.__name__, inst)
            else:
                episode.tools.append(item)
        self.episode = episode
        self.toolset = ToolSet(episode.tools)
        self.runner = FunctionRunner(self.toolset, self.config)
        self.turn = 0
        self.errors = {}

    def declaration(self) -> Declaration:
        return Declaration(functions=tuple(self.toolset.harmony_specs()))

    def recipients(self) -> list[str]:
        return [f"functions.{n}" for n in self.toolset.harmony_names()]

    def answers(self, recipient: str) -> bool:
        return recipient.startswith("functions.")

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Make more tools available from now on (a multi-turn task's held-out functions)."""
        self.toolset.add(tools)

    def _record(self, record: CallRecord, skipped: Sequence[str]) -> ToolOutcome:
        self.episode.calls.append(record)
        if record.error_kind is not None:
            self.errors[record.error_kind] = self.errors.get(record.error_kind, 0) + 1
        outcome = FunctionRunner.outcome(record)
        if skipped:
            self.errors["not_run"] = self.errors.get("not_run", 0) + len(skipped)
            note = (f"Note: only the last call of a message runs; {', '.join(skipped)} "
                    "did not run. End each call with <|call|> and wait for its result.\n")
            outcome = dataclasses.replace(outcome, text=note + outcome.text)
        return outcome

    def call(self, call: ToolCall) -> ToolOutcome:
        return self._record(self.runner.run(call, self.turn), call.skipped)

    async def acall(self, call: ToolCall) -> ToolOutcome:
        return self._record(await self.runner.arun(call, self.turn), call.skipped)

    def info(self) -> dict[str, Any]:
        """``user_turn``, ``calls`` made, ``errors`` by kind and the ``renamed`` functions."""
        return {"user_turn": self.turn, "calls": len(self.episode.calls),
                "errors": dict(sorted(self.errors.items())),
                "renamed": self.toolset.names.renamed}
