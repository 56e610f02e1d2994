"""The reward of a τ² conversation, by τ²'s rules (``tau2.evaluator.evaluate_simulation`` with
``EvaluationType.ALL``, or ``ALL_WITH_NL_ASSERTIONS`` when a judge is given).

Our own code, held to τ²'s evaluator by the agreement tests (tests/agent_envs/tau2): the same
conversation gets the same reward and the same checks. The rules:

* a conversation that did not end by the user's (or agent's) stop scores 0
  (``max_steps``, ``too_many_errors``, ...); a task without criteria scores 1;
* **DB**: the episode's database (the environment the agent's calls ran on) hashes like the
  database a fresh environment has after the task's expected actions (errors in those ignored);
  **ENV_ASSERTION**: each of the task's assertions holds on the episode's environment;
  an assertion whose check raises (what it asserts on does not exist, e.g. a task the agent
  never created) is not met: τ²'s evaluator raises instead, so its run has no reward for the
  conversation (the one divergence; :data:`ASSERTION_RAISES`);
* **ACTION**: each expected action matches some call of the conversation (name, and the
  arguments in ``compare_args``; any order, failed calls count);
* **COMMUNICATE**: each ``communicate_info`` string occurs, case-insensitively, in some agent
  message to the user with its commas removed;
* **NL_ASSERTION**: a judge grades the assertions (only with a judge; off by default);
* the reward is the product of the parts in the task's ``reward_basis``.

:func:`evaluate` returns τ²'s ``RewardInfo`` as plain JSON (the verifier's knowledge: keep it
out of what the model or a remote client sees; the env shows :func:`summary`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

from agent_envs.envs.tau2.data import Tau2Error, domain
from agent_envs.envs.tau2.tasks import Tau2Task, initialise

__all__ = ["ASSERTION_RAISES", "STOPPED", "VERIFIER_VERSION", "evaluate", "gold_hashes", "summary"]

#: Bump when a verdict can change (agent_envs.eval.suites.VERIFIER_VERSIONS mirrors it).
VERIFIER_VERSION = "tau2-1"
#: The divergence from τ²'s evaluator, named: an env assertion that raises is not met here
#: (reward 0 when ENV_ASSERTION counts); τ²'s ``evaluate_simulation`` lets the exception out.
ASSERTION_RAISES = "env assertion raises: not met here, an exception in τ²"
#: Termination reasons after which a conversation is judged (τ²'s AGENT_STOP, USER_STOP).
STOPPED = ("agent_stop", "user_stop")


@functools.lru_cache(maxsize=4096)
def gold_hashes(domain_name: str, tau2_id: str) -> tuple[str | None, str | None]:
    """(agent DB hash, user DB hash) after the task's expected actions on a fresh environment
    in the task's initial state (τ²'s "gold environment"); cached per task."""
    dom = domain(domain_name)
    task = dom.task(tau2_id)
    env = dom.new_environment()
    initialise(env, task)
    for action in task.evaluation_criteria.actions or []:
        with contextlib.suppress(Exception):  # τ² ignores expected actions that fail
            env.make_tool_call(tool_name=action.name, requestor=action.requestor,
                               **action.arguments)
    return env.get_db_hash(), env.get_user_db_hash()


def _env_part(task: Tau2Task, t: Any, environment: Any) -> dict[str, Any]:
    ec = t.evaluation_criteria
    if ec.actions is None and ec.env_assertions is None:
        return {"reward": 1.0, "db_check": {"db_match": True, "db_reward": 1.0},
                "env_assertions": None, "breakdown": None,
                "info": {"note": "No expected actions or env assertions"}}
    gold_db, gold_user = gold_hashes(task.domain, task.tau2_id)
    match = (environment.get_db_hash() == gold_db
             and environment.get_user_db_hash() == gold_user)
    db_reward = 1.0 if match else 0.0
    checks, assertion_reward = [], 1.0
    for assertion in ec.env_assertions or []:
        try:
            met = bool(environment.run_env_assertion(assertion, raise_assertion_error=False))
        except Exception:  # noqa: BLE001 - see ASSERTION_RAISES
            met = False
        checks.append({"env_assertion": assertion.model_dump(mode="json"), "met": met,
                       "reward": 1.0 if met else 0.0})
        assertion_reward *= 1.0 if met else 0.0
    basis = {r.value for r in ec.reward_basis}
    reward, breakdown = 1.0, {}
    if "DB" in basis:
        breakdown["DB"] = db_reward
        reward *= db_reward
    if "ENV_ASSERTION" in basis:
        breakdown["ENV_ASSERTION"] = assertion_reward
        reward *= assertion_reward
    return {"reward": reward, "db_check": {"db_match": match, "db_reward": db_reward},
            "env_assertions": checks, "breakdown": breakdown, "info": None}


def _calls(messages: Sequence[Any]) -> list[Any]:
    return [c for m in messages if m.role in ("assistant", "user") and m.is_tool_call()
            for c in m.tool_calls]


def _matches(action: Any, call: Any) -> bool:
    if action.name != call.name:
        return False
    keys = call.arguments.keys() if action.compare_args is None else action.compare_args
    if len(keys) == 0:
        return True
    return ({k: v for k, v in call.arguments.items() if k in keys}
            == {k: v for k, v in action.arguments.items() if k in keys})


def _action_part(t: Any, messages: Sequence[Any]) -> dict[str, Any]:
    gold = t.evaluation_criteria.actions
    if not gold:
        return {"reward": 1.0, "checks": None, "breakdown": {"ACTION": 1.0},
                "info": {"note": "No actions to evaluate"}}
    calls = _calls(messages)
    checks = []
    for action in gold:
        found = any(_matches(action, c) for c in calls)
        checks.append({"action": action.model_dump(mode="json"), "action_match": found,
                       "action_reward": 1.0 if found else 0.0})
    reward = 1.0 if all(c["action_match"] for c in checks) else 0.0
    return {"reward": reward, "checks": checks, "breakdown": {"ACTION": reward}, "info": None}


def _communicate_part(t: Any, messages: Sequence[Any]) -> dict[str, Any]:
    infos = t.evaluation_criteria.communicate_info
    if not infos:
        return {"reward": 1.0, "checks": None, "breakdown": {"COMMUNICATE": 1.0},
                "info": {"note": "No communicate_info to evaluate"}}
    said = [m.content for m in messages
            if m.role == "assistant" and m.content is not None and m.content.strip() != ""]
    checks = []
    for info in infos:
        hit = next((text for text in said if info.lower() in text.lower().replace(",", "")),
                   None)
        checks.append({"info": info, "met": hit is not None, "justification": (
            f"Information '{info}' communicated in the message:\n '{hit}'" if hit is not None
            else f"Information '{info}' not communicated.")})
    reward = 1.0 if all(c["met"] for c in checks) else 0.0
    return {"reward": reward, "checks": checks, "breakdown": {"COMMUNICATE": reward},
            "info": None}


def _nl_part(t: Any, messages: Sequence[Any], judge: Any) -> dict[str, Any]:
    assertions = t.evaluation_criteria.nl_assertions
    if not assertions:
        return {"reward": 1.0, "checks": [], "breakdown": {"NL_ASSERTION": 1.0},
                "info": {"note": "No nl_assertions to evaluate"}}
    checks = judge.assess(messages, list(assertions))
    reward = 1.0 if all(c["met"] for c in checks) else 0.0
    return {"reward": reward, "checks": checks, "breakdown": {"NL_ASSERTION": reward},
            "info": None}


def _info(**fields: Any) -> dict[str, Any]:
    """A RewardInfo with every field (τ²'s defaults where not given)."""
    return {"reward": 0.0, "db_check": None, "env_assertions": None, "action_checks": None,
            "nl_assertions": None, "communicate_checks": None, "reward_basis": None,
            "reward_breakdown": None, "info": None, **fields}


def evaluate(task: Tau2Task, messages: Sequence[Any], environment: Any, termination: str,
             judge: Any = None) -> dict[str, Any]:
    """τ²'s ``RewardInfo`` (as JSON) for a conversation.

    Args:
        task: The task.
        messages: τ²'s trajectory (its message objects, the task's history first: see
            :func:`~agent_envs.envs.tau2.conversation.tau2_messages`).
        environment: The τ² environment the conversation's calls ran on.
        termination: τ²'s termination reason (``user_stop``, ``max_steps``, ...).
        judge: Grades NL assertions (:class:`~agent_envs.envs.tau2.judge.LLMJudge`); None
            leaves them out, as τ²'s default evaluation does.

    Raises:
        Tau2Error: the task's reward needs NL assertions and no judge was given.
    """
    if termination not in STOPPED:
        return _info(reward=0.0, info={
            "note": f"Simulation terminated prematurely. Termination reason: {termination}"})
    t = task.tau2_task()
    ec = t.evaluation_criteria
    if ec is None:
        return _info(reward=1.0, info={"note": "No evaluation criteria"})
    basis = [r.value for r in ec.reward_basis]
    env = _env_part(task, t, environment)
    action = _action_part(t, messages)
    comm = _communicate_part(t, messages)
    nl = _nl_part(t, messages, judge) if judge is not None else None
    reward, breakdown = 1.0, {}
    if set(basis) & {"DB", "ENV_ASSERTION"}:
        breakdown.update(env["breakdown"] or {})
        reward *= env["reward"]
    if "ACTION" in basis:
        breakdown.update(action["breakdown"])
        reward *= action["reward"]
    if "NL_ASSERTION" in basis:
        if nl is None:
            raise Tau2Error(f"task {task.id}'s reward counts NL assertions, which need a judge: "
                            "pass judge=LLMJudge(policy) (agent-envs eval --judge URL)")
        breakdown.update(nl["breakdown"])
        reward *= nl["reward"]
    if "COMMUNICATE" in basis:
        breakdown.update(comm["breakdown"])
        reward *= comm["reward"]
    return {
        "reward": reward, "db_check": env["db_check"], "env_assertions": env["env_assertions"],
        "action_checks": action["checks"], "nl_assertions": None if nl is None else nl["checks"],
        "communicate_checks": comm["checks"], "reward_basis": basis,
        "reward_breakdown": breakdown,
        "info": {"env": env["info"], "nl": None if nl is None else nl["info"],
                 "communicate": comm["info"], "action": action["info"]},
    }


def summary(reward_info: dict[str, Any]) -> dict[str, Any]:
    """What the env may show of a reward: the reward, its basis and breakdown, and counts of
    checks met (never the expected actions or strings themselves)."""
    out: dict[str, Any] = {"reward": reward_info["reward"],
                           "reward_basis": reward_info.get("reward_basis"),
                           "reward_breakdown": reward_info.get("reward_breakdown")}
    for key, flag in (("action_checks", "action_match"), ("communicate_checks", "met"),
                      ("env_assertions", "met"), ("nl_assertions", "met")):
        checks = reward_info.get(key)
        if checks:
            out[key] = f"{sum(bool(c[flag]) for c in checks)}/{len(checks)}"
    db = reward_info.get("db_check")
    if db is not None:
        out["db_match"] = db["db_match"]
    note = (reward_info.get("info") or {}).get("note")
    if note:
        out["note"] = note
    return out
