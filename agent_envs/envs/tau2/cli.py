"""The command line's simulated-user and judge options for tau2 suites.

``agent-envs eval tau2-retail --policy URL --model M --user URL2 --user-model U`` runs the agent
against an LLM user; ``--user scripted`` (the default) and ``--user cassette:PATH`` need no
model; ``--record-user PATH`` records whichever user plays into a cassette; ``--judge URL3
--judge-model J`` grades τ²'s NL assertions. Policies come from the CLI's own policy specs
(``trainers.rollout.policy_from_spec``, passed in by the CLI: this family does not import
trainers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent_envs.envs.tau2.data import Tau2Error
from agent_envs.envs.tau2.judge import LLMJudge
from agent_envs.envs.tau2.user import LLMUser, user_from_spec

__all__ = ["eval_env_args"]


def eval_env_args(args: Any, policy_factory: Callable[..., Any]) -> dict[str, Any]:
    """The env arguments of an eval run from ``--user``, ``--user-model``, ``--record-user``,
    ``--judge`` and ``--judge-model``.

    Raises:
        Tau2Error: a model name without its policy, or a policy spec the factory refuses.
    """
    out: dict[str, Any] = {}
    user, user_model = getattr(args, "user", None), getattr(args, "user_model", None)
    judge, judge_model = getattr(args, "judge", None), getattr(args, "judge_model", None)
    if user_model and not user:
        raise Tau2Error("--user-model names the model behind --user URL; pass --user too")
    if judge_model and not judge:
        raise Tau2Error("--judge-model names the model behind --judge URL; pass --judge too")
    if user:
        if user == "scripted" or user.startswith("cassette:"):
            user_from_spec(user)  # a missing cassette fails here, before any episode
            out["user"] = user
        else:
            out["user"] = LLMUser(policy_factory(user, model=user_model), model=user_model)
    if getattr(args, "record_user", None):
        out["record_user"] = args.record_user
    if judge:
        out["judge"] = LLMJudge(policy_factory(judge, model=judge_model), model=judge_model)
    return out
