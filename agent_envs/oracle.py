"""The oracle: real harmony completions for every env's tasks, through one ``Oracle``.

Each environment family has an oracle of its own next to its tasks
(``agent_envs/envs/<family>/oracle.py``) that behaves as a well-trained gpt-oss would: it
uses the tools as a model would and builds its answer from what they *actually* returned,
so a broken tool shows up as a wrong answer, not a silent pass. A family registers its
oracle for its ``Task`` subclass with :func:`register_oracle`; ``Oracle`` dispatches on the
task's type (the most specific registered class first). Plain ``Task`` objects (procedural
python-tool problems, JSONL files, GSM8K, MATH) go to python-tool's oracle.

The oracle needs the task, which a real model would not: it exists to test the environments
end to end and to benchmark everything except the model. The CLI, the collector's
``OraclePolicy`` and the tests use this one ``Oracle`` for every env.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from agent_envs.harmony import HarmonyCodec, get_codec
from agent_envs.tasks.base import Task

__all__ = ["FamilyOracle", "Oracle", "perturb", "register_oracle"]


class FamilyOracle(Protocol):
    """What a family's oracle provides (built as ``factory(codec=..., wrong=...)``)."""

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Any) -> str: ...


_ORACLES: dict[type, Callable[..., FamilyOracle]] = {}


def register_oracle(task_type: type, factory: Callable[..., FamilyOracle]) -> None:
    """Use ``factory(codec=codec, wrong=wrong)`` for tasks of ``task_type`` (and subclasses).

    Raises:
        ValueError: ``task_type`` is the base ``Task`` (the python-tool oracle's own).
    """
    if task_type is Task:
        raise ValueError("register_oracle needs a Task subclass; plain Task is the "
                         "python-tool oracle's")
    _ORACLES[task_type] = factory


def _python_tool_oracle(**kwargs: Any) -> FamilyOracle:
    from agent_envs.envs.python_tool.oracle import PythonToolOracle

    return PythonToolOracle(**kwargs)


class Oracle:
    """Writes the next completion for an observation of any env, given the episode's task.

    Args:
        codec: The harmony codec (default: the process-wide one).
        wrong: If True, the final answer is deliberately off (for tests and
            baselines: reward must then be 0).
    """

    policy_id = "oracle"

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False) -> None:
        self.codec = codec or get_codec()
        self.wrong = wrong
        self._family: dict[type, FamilyOracle] = {}

    def family_oracle(self, task: Task) -> FamilyOracle:
        """The oracle of ``task``'s family (built once per family)."""
        for cls in type(task).__mro__:
            factory = _ORACLES.get(cls) if cls is not Task else _python_tool_oracle
            if factory is not None:
                if cls not in self._family:
                    self._family[cls] = factory(codec=self.codec, wrong=self.wrong)
                return self._family[cls]
        raise TypeError(f"the oracle needs a Task, got {type(task).__name__}")

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Task) -> str:
        """The completion as text (harmony special tokens written out)."""
        return self.family_oracle(task).act_text(obs, task)

    def act(self, obs: Sequence[int] | np.ndarray, task: Task) -> list[int]:
        """The completion as token ids, ending in ``<|call|>`` or ``<|return|>``."""
        return self.codec.encode(self.act_text(obs, task))


def perturb(answer: str) -> str:
    """A different answer of the same shape (numbers move by one, words change): what the
    families' ``wrong=True`` oracles answer."""
    try:
        return str(Fraction(answer.replace(",", "")) + 1)
    except (ValueError, ZeroDivisionError):
        return f"not {answer}" if answer else "0"
