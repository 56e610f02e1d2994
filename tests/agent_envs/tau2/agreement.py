"""Agreement with τ²'s evaluator: one conversation, two scorers.

A case is a task and a plan (the oracle's, or one systematic mutation of it: see
:mod:`agent_envs.envs.tau2.plan`). The plan's agent plays the env against the scripted user;
the conversation the env recorded is handed, as τ²'s message objects, to
``tau2.evaluator.evaluate_simulation``; the env's ``RewardInfo`` and τ²'s must be equal, field
for field. Used by tests/agent_envs/tau2/test_agreement.py (a seeded sample) and
benchmarks/tau2_agreement.py (every task of every served domain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_envs.envs.tau2 import Tau2Env, Tau2Oracle
from agent_envs.envs.tau2.plan import Mutation, applicable_mutations, oracle_plan
from agent_envs.envs.tau2.verifier import ASSERTION_RAISES, evaluate
from tests.agent_envs.tau2.tau2_reference import tau2_reward_info

__all__ = ["Case", "cases_for", "run_case"]


@dataclass(frozen=True, kw_only=True)
class Case:
    """The outcome of one case."""

    task_id: str
    mutation: str
    termination: str
    ours: dict[str, Any]
    theirs: dict[str, Any] | None
    error: str | None  # τ²'s evaluator raised this

    @property
    def agree(self) -> bool:
        """Equal RewardInfo (every field)."""
        return self.error is None and self.ours == self.theirs

    @property
    def divergence(self) -> str | None:
        """The named divergence this case shows, or None."""
        if self.error is not None and "not found" in self.error and self.ours["reward"] == 0.0 \
                and any(not c["met"] for c in self.ours.get("env_assertions") or []):
            return ASSERTION_RAISES
        return None


def cases_for(env: Tau2Env, task_id: str) -> list[str]:
    """``oracle`` and every mutation that changes the task's plan."""
    task = env.task_source.get(task_id)
    plan = oracle_plan(task.tau2_task(), task.domain)
    return ["oracle", *applicable_mutations(plan, task.domain)]


def run_case(env: Tau2Env, task_id: str, case: str) -> Case:
    """Play one case on ``env`` and score it both ways."""
    mutation: Mutation | None = None if case == "oracle" else case  # type: ignore[assignment]
    oracle = Tau2Oracle(mutation=mutation, max_errors=env.max_errors or 10)
    obs, _ = env.reset(options={"task_id": task_id})
    while True:
        obs, _, term, trunc, info = env.step(oracle.act_text(obs, env.task))
        if term or trunc:
            break
    assert info["infra_error"] is None, info["infra_error"]
    termination = info["episode"]["tau2"]["termination_reason"]
    task = env.task
    ours = env.reward_info if env.reward_info is not None else evaluate(
        task, env.tau2_trajectory(), env.episode.environment, termination)
    assert ours["reward"] == info["reward_components"]["correct"]
    theirs, error = None, None
    try:
        ref = tau2_reward_info(task.domain, task.tau2_task(), env.tau2_trajectory(), termination)
        theirs = ref.model_dump(mode="json")
    except Exception as e:  # noqa: BLE001 - τ²'s evaluator raising is an outcome to compare
        error = f"{type(e).__name__}: {e}"
    return Case(task_id=task_id, mutation=case, termination=termination, ours=_json(ours),
                theirs=theirs, error=error)


def _json(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))
