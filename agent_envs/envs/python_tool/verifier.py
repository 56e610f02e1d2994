"""python-tool's verifier: the final answer against the task's exact answer (pure).

The answer is extracted from the final message (``\\boxed{...}``, then ``answer: X``, then
the last number; see :mod:`agent_envs.tasks.answers`) and compared by the task's
``answer_kind`` (int, fraction, float with tolerance, normalised string).
"""

from __future__ import annotations

from agent_envs.tasks.answers import check_answer
from agent_envs.tasks.base import Task, Verdict

__all__ = ["VERIFIER_VERSION", "verify"]

#: Bump whenever a verdict can change (answer extraction, comparison); eval suites pin it.
VERIFIER_VERSION = "answers-1"


def verify(task: Task, final_text: str) -> Verdict:
    """The verdict on ``final_text`` as the answer to ``task``."""
    return check_answer(final_text, task)
