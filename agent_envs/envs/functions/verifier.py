"""The functions family's verifier (pure): a finished episode judged by its task.

A ``FunctionsTask`` judges the whole episode (:meth:`FunctionsTask.judge`): the calls made
(BFCL's AST and state checks, expected calls), the final state of stateful tools, and the
answers. A turn that is not the task's last is not judged. Other tasks are judged on the
final answer (:mod:`agent_envs.tasks.answers`).
"""

from __future__ import annotations

from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.tasks.answers import check_answer
from agent_envs.tasks.base import Task, Verdict

__all__ = ["VERIFIER_VERSION", "verify"]

#: Bump whenever a verdict can change; eval suites pin it.
VERIFIER_VERSION = "functions-1"


def verify(task: Task, episode: EpisodeState, final_text: str, user_turn: int = 0) -> Verdict:
    """The verdict on an episode whose user turn ``user_turn`` just got ``final_text``."""
    if isinstance(task, FunctionsTask):
        if user_turn + 1 < task.n_turns:
            return Verdict(correct=False, extracted=None,
                           reason=f"turn {user_turn + 1} of {task.n_turns} answered")
        return task.judge(episode)
    return check_answer(final_text, task)
