"""The multi-tool family's verifier: the final answer against the task's exact answer (pure).

Research and data-ops answers are exact numbers or names; the answer is extracted from the
final message (``\\boxed{...}`` first) and compared by the task's ``answer_kind``
(:mod:`agent_envs.tasks.answers`).
"""

from __future__ import annotations

from agent_envs.tasks.answers import check_answer
from agent_envs.tasks.base import Task, Verdict

__all__ = ["VERIFIER_VERSION", "verify"]

#: Bump whenever a verdict can change; eval suites pin it.
VERIFIER_VERSION = "agent-answers-1"


def verify(task: Task, final_text: str) -> Verdict:
    """The verdict on ``final_text`` as the answer to ``task``."""
    return check_answer(final_text, task)
