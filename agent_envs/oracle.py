"""An oracle that writes real harmony completions for tasks with a reference solution.

It behaves as a well-trained gpt-oss would on these tasks: an analysis message,
a python call with the task's reference code, then, once the tool has
answered, a final answer built from the tool's *actual* output (so a broken
sandbox or a wrong reference shows up as a wrong answer, not a silent pass).
Tasks without reference code get the known answer directly.

The oracle needs the task, which a real model would not: it exists to test the
environments end to end and to benchmark everything except the model.

Other environment families (browser, functions) have tasks of their own ``Task``
subclasses and register an oracle for them with :func:`register_oracle`; ``Oracle``
dispatches on the task's type, so the CLI, the collector's ``OraclePolicy`` and the tests
use one ``Oracle`` for every env.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import openai_harmony as oh

from agent_envs.harmony import HarmonyCodec, get_codec, message_text
from agent_envs.tasks.base import Task

__all__ = ["FamilyOracle", "Oracle", "register_oracle"]


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


class Oracle:
    """Writes the next completion for an observation of the python-tool env.

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

    def _family_oracle(self, task: Task) -> FamilyOracle | None:
        for cls in type(task).__mro__:
            if cls is Task:
                return None
            if cls in _ORACLES:
                if cls not in self._family:
                    self._family[cls] = _ORACLES[cls](codec=self.codec, wrong=self.wrong)
                return self._family[cls]
        return None

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Task) -> str:
        """The completion as text (harmony special tokens written out)."""
        family = self._family_oracle(task)
        if family is not None:
            return family.act_text(obs, task)
        messages = self.codec.parse_conversation(obs)
        last = messages[-1] if messages else None
        if last is not None and last.author.role == oh.Role.TOOL:
            output = message_text(last).strip()
            lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
            answer = lines[-1] if lines else ""
            return self._final(answer, note=f"The tool printed {answer!r}.")
        if task.solution_code is None:
            return self._final(task.answer, note="I know this one.")
        return ("<|channel|>analysis<|message|>I will compute this exactly with python."
                "<|end|><|start|>assistant<|channel|>analysis to=python code<|message|>"
                f"{task.solution_code.rstrip()}<|call|>")

    def act(self, obs: Sequence[int] | np.ndarray, task: Task) -> list[int]:
        """The completion as token ids, ending in ``<|call|>`` or ``<|return|>``."""
        return self.codec.encode(self.act_text(obs, task))

    def _final(self, answer: str, *, note: str) -> str:
        if self.wrong:
            answer = _perturb(answer)
        return (f"<|channel|>analysis<|message|>{note}<|end|>"
                f"<|start|>assistant<|channel|>final<|message|>"
                f"The answer is \\boxed{{{answer}}}.<|return|>")


def _perturb(answer: str) -> str:
    """A different answer of the same shape (numbers move by one, words change)."""
    try:
        return str(Fraction(answer.replace(",", "")) + 1)
    except (ValueError, ZeroDivisionError):
        return f"not {answer}" if answer else "0"
