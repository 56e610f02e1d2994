"""An oracle that writes real harmony completions for tasks with a reference solution.

It behaves as a well-trained gpt-oss would on these tasks: an analysis message,
a python call with the task's reference code, then, once the tool has
answered, a final answer built from the tool's *actual* output (so a broken
sandbox or a wrong reference shows up as a wrong answer, not a silent pass).
Tasks without reference code get the known answer directly.

The oracle needs the task, which a real model would not: it exists to test the
environments end to end and to benchmark everything except the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import openai_harmony as oh

from agent_envs.harmony import HarmonyCodec, get_codec, message_text
from agent_envs.tasks.base import Task

__all__ = ["Oracle"]


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

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Task) -> str:
        """The completion as text (harmony special tokens written out)."""
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
