"""Tasks of the functions env: what an episode asks, which tools it brings, how it is judged.

A :class:`FunctionsTask` may bring its own tools (BFCL's function documents and
executable backends, the procedural tool sets), built fresh for every episode by
:meth:`FunctionsTask.episode`, and may have several user turns. It is judged on the
whole episode (the calls made, the final state, the final answers), not on a final
answer alone.

Users' own tasks come from JSONL (``jsonl:PATH``, the format of
``agent_envs.tasks.JsonlTasks``): ``answer`` is checked against the final answer (an
empty string skips that check), and ``meta.expected_calls`` (a list of
``{"name": ..., "arguments": {...}}``) must appear, in order, among the calls that
succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent_envs.envs.functions.runtime import CallRecord
from agent_envs.envs.functions.tools import Tool
from agent_envs.errors import TaskFileError
from agent_envs.tasks.base import Task, TaskSource, Verdict
from agent_envs.tasks.finite import FiniteTasks

__all__ = ["CallsTask", "EpisodeState", "FunctionsTask", "calls_tasks_from_jsonl"]


class EpisodeState:
    """One episode's tools and what happened to them.

    Args:
        tools: The tools available from the start (bound to this episode's instances).
        instances: The episode's stateful objects, by name (for state checks).
        added: Tools that become available at a user turn (index -> tools).

    Attributes:
        calls: Every call the model made, in order (failed ones too).
        finals: The final answer text of each finished user turn.
    """

    def __init__(self, tools: Sequence[Tool], instances: Mapping[str, Any] | None = None,
                 added: Mapping[int, Sequence[Tool]] | None = None) -> None:
        self.tools = list(tools)
        self.instances = dict(instances or {})
        self.added = {int(k): list(v) for k, v in (added or {}).items()}
        self.calls: list[CallRecord] = []
        self.finals: list[str] = []

    def end_turn(self, turn: int) -> None:
        """Called when user turn ``turn`` ends (a final answer); subclasses snapshot state."""

    def close(self) -> None:
        """Release the episode's resources (called when the episode ends)."""


@dataclass(frozen=True, kw_only=True)
class FunctionsTask(Task):
    """A task of the functions env.

    Attributes:
        more_turns: User messages after ``prompt``, one per further turn; the next one is
            sent after each final answer.
        instructions: Developer instructions for this task (None: the env's).
        history: Earlier messages shown before ``prompt``: ``({"role": "user" |
            "assistant", "content": ...}, ...)``.
    """

    more_turns: tuple[str, ...] = ()
    instructions: str | None = None
    history: tuple[Mapping[str, str], ...] = ()

    @property
    def n_turns(self) -> int:
        """Number of user turns."""
        return 1 + len(self.more_turns)

    def episode(self) -> EpisodeState:
        """A fresh episode state with this task's own tools (none by default)."""
        return EpisodeState(())

    def judge(self, episode: EpisodeState) -> Verdict:
        """The verdict on a finished episode (every turn answered)."""
        from agent_envs.tasks.answers import check_answer
        return check_answer(episode.finals[-1] if episode.finals else "", self)

    # -- what the oracle needs (it knows the task; a model would not) ---------------

    #: Whether a deliberately wrong policy should make calls (it should not where making
    #: any call is the right answer, as in BFCL's relevance category).
    wrong_policy_calls: ClassVar[bool] = True

    def tool_names(self) -> list[str]:
        """Names of every tool the task brings (for the oracle's name mapping)."""
        return [t.name for t in self.episode().tools]

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        """The next reference call of user turn ``turn`` given the calls made in it so far
        (``(name, arguments, result_text)``), or None when the turn's calls are done."""
        return None

    def oracle_final(self, turn: int) -> str:
        """The reference final answer of user turn ``turn``."""
        return f"The answer is {self.answer}." if self.answer else "Done."


@dataclass(frozen=True, kw_only=True)
class CallsTask(FunctionsTask):
    """A user task: optional expected calls (in order) plus an optional final answer.

    Attributes:
        expected_calls: ``({"name": ..., "arguments": {...}}, ...)`` that must appear, in
            this order, among the calls that succeeded (other calls may come between).
    """

    expected_calls: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def judge(self, episode: EpisodeState) -> Verdict:
        good = iter([(c.name, c.arguments) for c in episode.calls if c.ok])
        for want in self.expected_calls:
            target = (want["name"], dict(want.get("arguments") or {}))
            if not any(got == target for got in good):
                return Verdict(correct=False, extracted=None,
                               reason=f"expected call {target[0]}({target[1]}) not made "
                                      f"(in order)")
        if self.answer == "":
            return Verdict(correct=True, extracted=None, reason="all expected calls made")
        return super().judge(episode)

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        n_ok = sum(1 for _, _, text in done if not text.startswith("Error:"))
        if turn != 0 or n_ok >= len(self.expected_calls):
            return None
        want = self.expected_calls[n_ok]
        return want["name"], dict(want.get("arguments") or {})


def _calls_task(task: Task) -> CallsTask:
    meta = dict(task.meta)
    raw = meta.pop("expected_calls", [])
    if not isinstance(raw, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str)
            and isinstance(c.get("arguments", {}), dict) for c in raw):
        raise TaskFileError(f"task {task.id!r}: meta.expected_calls must be a list of "
                            '{"name": "...", "arguments": {...}} objects, got '
                            f"{raw!r:.200}")
    more = meta.pop("more_turns", [])
    if not isinstance(more, list) or not all(isinstance(t, str) for t in more):
        raise TaskFileError(f"task {task.id!r}: meta.more_turns must be a list of strings")
    return CallsTask(id=task.id, prompt=task.prompt, answer=task.answer,
                     answer_kind=task.answer_kind, tolerance=task.tolerance, split=task.split,
                     difficulty=task.difficulty, source="functions-jsonl", meta=meta,
                     expected_calls=tuple(raw), more_turns=tuple(more))


def calls_tasks_from_jsonl(path: str) -> TaskSource:
    """Users' tasks from a JSONL file (see the module docstring)."""
    from agent_envs.tasks.jsonl import JsonlTasks
    base = JsonlTasks(path)
    return TaskList("functions-jsonl", (_calls_task(t) for t in base), origin=str(path))


class TaskList(FiniteTasks):
    """A finite list of functions tasks."""

    def __init__(self, name: str, tasks: Iterable[Task], *, origin: str) -> None:
        super().__init__(name=name, tasks=tasks, origin=origin)

