"""Tasks: what an episode asks, and how its answer is judged.

Tasks are a separate axis from environments: any ``TaskSource`` can feed the
python-tool env. A source is either procedural (unlimited, seeded) or finite
(a JSONL file, a dataset split).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AnswerKind", "Split", "Task", "TaskSource", "Verdict", "check_procedural_only"]

AnswerKind = Literal["int", "fraction", "float", "str"]
Split = Literal["train", "test"]


@dataclass(frozen=True, kw_only=True)
class Task:
    """One problem.

    Attributes:
        id: Stable id; ``source.get(id)`` returns an equal task.
        prompt: The user message text the model sees.
        answer: The canonical exact answer, as a string (``"42"``, ``"3/7"``,
            ``"0.125"``, ``"abc"``).
        answer_kind: How ``answer`` is compared (see ``agent_envs.tasks.answers``).
        tolerance: Relative tolerance for ``float`` answers, else None.
        solution_code: Reference Python that, run as one notebook cell, prints
            the answer (exactly ``answer`` once stripped) as its last line of
            output. None for tasks without a reference solution.
        split: ``"train"`` or ``"test"``.
        difficulty: The difficulty knob the task was generated at (0 if n/a).
        source: Name of the source that made it.
        meta: Free-form extras (family, parameters, dataset row index, ...).
    """

    id: str
    prompt: str
    answer: str
    answer_kind: AnswerKind = "str"
    tolerance: float | None = None
    solution_code: str | None = None
    split: Split = "train"
    difficulty: int = 0
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The verifier's judgement of a final answer.

    Attributes:
        correct: Whether the extracted answer equals the task's answer.
        extracted: The answer string pulled out of the response, or None when
            none could be found.
        reason: A short human-readable explanation (``"match"``,
            ``"no answer found"``, ``"expected 42, got 41"``).
    """

    correct: bool
    extracted: str | None
    reason: str


class TaskSource(abc.ABC):
    """A source of tasks.

    ``sample(seed, split)`` must be a pure function of its arguments: the same
    seed and split give an equal task on every machine and every run.
    """

    name: str

    @abc.abstractmethod
    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed`` in ``split``."""

    @abc.abstractmethod
    def get(self, task_id: str) -> Task:
        """The task with this id. Raises ``UnknownTask`` for ids it never made."""

    def __len__(self) -> int:  # pragma: no cover - overridden by finite sources
        raise TypeError(f"task source {self.name!r} is unbounded (procedural)")


def check_procedural_only(source: object, **knobs: Any) -> None:
    """Refuse procedural knobs (``difficulty=``, ``families=``, ...) given with a source that
    is not a procedural spec: they would be ignored silently.

    Args:
        source: The task source (a spec string or a ``TaskSource``) the knobs came with.
        **knobs: The knobs as passed; None means not given.

    Raises:
        ValueError: a knob was given; the message names it, the source and the fix.
    """
    given = {k: v for k, v in knobs.items() if v is not None}
    if not given:
        return
    name, value = next(iter(given.items()))
    what = repr(source) if isinstance(source, str) else f"a ready {type(source).__name__}"
    fix = ("configure the source when you build it" if not isinstance(source, str)
           else "its tasks are the file's (or dataset's) own: drop it, or use "
                "task_source='procedural'")
    raise ValueError(f"{name}={value!r} applies to procedural tasks only, not to task source "
                     f"{what}; {fix}")
