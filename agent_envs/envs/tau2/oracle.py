"""The oracle for τ² tasks: it follows the task's plan (:mod:`~agent_envs.envs.tau2.plan`).

It reads the conversation from the observation (which agent turn it is, which calls it made
in this turn) and writes the next completion as gpt-oss would: the plan's next call
(``to=functions.NAME <|constrain|>json``), or, when the turn's calls are made, its message
to the user on ``final``. Against the scripted user (the same plan's user) it scores 1.0 on
every served task. ``wrong=True`` (``oracle-wrong``) makes the plan's one mistake that τ²'s
evaluator scores 0 (:func:`~agent_envs.envs.tau2.plan.wrong_mutation`); ``mutation=`` makes a
given mistake (the agreement tests use every one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai_harmony as oh

from agent_envs.envs.functions.oracle import call_text, final_text
from agent_envs.envs.tau2.conversation import history_messages
from agent_envs.envs.tau2.plan import Mutation, Plan, mutate, oracle_plan, wrong_mutation
from agent_envs.envs.tau2.tasks import Tau2Task
from agent_envs.harmony import HarmonyCodec, get_codec
from agent_envs.oracle import register_oracle

__all__ = ["Tau2Oracle"]


class Tau2Oracle:
    """Writes the next completion for a tau2-env observation (see the module docstring).

    Args:
        codec: The harmony codec.
        wrong: Be ``oracle-wrong``.
        mutation: Make this mistake instead (see :data:`~agent_envs.envs.tau2.plan.MUTATIONS`).
        max_errors: The env's ``max_errors`` (the ``too_many_errors`` mistake makes that many).
    """

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False,
                 mutation: Mutation | None = None, max_errors: int = 10) -> None:
        self.codec = codec or get_codec()
        self.wrong = wrong
        self.mutation = mutation
        self.max_errors = max_errors
        self._plans: dict[str, tuple[Plan, int]] = {}

    def plan(self, task: Tau2Task) -> Plan:
        """The plan this oracle follows on ``task``."""
        return self._plan(task)[0]

    def _plan(self, task: Tau2Task) -> tuple[Plan, int]:
        if task.id not in self._plans:
            t = task.tau2_task()
            plan = oracle_plan(t, task.domain)
            mutation, write = self.mutation, None
            if mutation is None and self.wrong:
                mutation, write = wrong_mutation(t, plan, task.domain)
            if mutation is not None:
                plan = mutate(plan, mutation, task.domain, max_errors=self.max_errors,
                              write=write)
            history_users = sum(1 for m in history_messages(task) if m.role == "user")
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[task.id] = (plan, history_users + (plan.opening is not None))
        return self._plans[task.id]

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Tau2Task) -> str:
        """The next completion as text."""
        plan, before = self._plan(task)
        messages = self.codec.parse_conversation(obs)
        users = [i for i, m in enumerate(messages) if m.author.role == oh.Role.USER]
        k = len(users) - before
        made = sum(1 for m in messages[(users[-1] if users else -1) + 1:]
                   if m.author.role == oh.Role.ASSISTANT
                   and (m.recipient or "").startswith("functions."))
        if not 0 <= k < len(plan.agent):
            return final_text("OK.", note="The plan is done.")
        turn = plan.agent[k]
        if made < len(turn.calls):
            name, args = turn.calls[made]
            return call_text(name, args)
        return final_text(turn.say, note="I will tell the user.")

    def act(self, obs: Sequence[int] | np.ndarray, task: Tau2Task) -> list[int]:
        """The next completion as token ids."""
        return self.codec.encode(self.act_text(obs, task))


register_oracle(Tau2Task, Tau2Oracle)
