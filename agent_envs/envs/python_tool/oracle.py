"""python-tool's oracle: real harmony completions for tasks with a reference solution.

It behaves as a well-trained gpt-oss would on these tasks: an analysis message, a python
call with the task's reference code, then, once the tool has answered, a final answer built
from the tool's *actual* output (so a broken sandbox or a wrong reference shows up as a wrong
answer, not a silent pass). Tasks without reference code get the known answer directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai_harmony as oh

from agent_envs.harmony import HarmonyCodec, get_codec, message_text
from agent_envs.oracle import perturb
from agent_envs.tasks.base import Task

__all__ = ["PythonToolOracle"]


class PythonToolOracle:
    """Writes the next completion for an observation of the python-tool env.

    Args:
        codec: The harmony codec (default: the process-wide one).
        wrong: If True, the final answer is deliberately off (reward must then be 0).
    """

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

    def _final(self, answer: str, *, note: str) -> str:
        if self.wrong:
            answer = perturb(answer)
        return (f"<|channel|>analysis<|message|>{note}<|end|>"
                f"<|start|>assistant<|channel|>final<|message|>"
                f"The answer is \\boxed{{{answer}}}.<|return|>")
