"""A tau2 eval bundle as τ²'s own results JSON (what ``tau2 run`` writes and its leaderboard
takes): ``agent-envs eval export BUNDLE --format tau2 --out FILE``.

Each scored episode becomes one of τ²'s ``SimulationRun``s: its conversation as τ²'s message
objects (the task's history, τ²'s greeting, the user's and the agent's messages, every call
that reached τ² with its tool message, got again by replaying the calls on a fresh database,
as τ²'s evaluator does), the termination reason, the trial and seed, and in ``reward_info``
our verifier's ``RewardInfo`` for that conversation, whose reward is the episode's reward
(the export checks it and refuses a bundle scored by another verifier). ``info`` says who
played the agent (the bundle's policy and sampling) and the user (the simulator's identity).
τ²'s own tooling reads the file (``Results.load``) and can evaluate it again
(``tau2.scripts.evaluate_trajectories``); the tests do, and assert equal rewards.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from agent_envs.envs.tau2.conversation import replay, tau2_messages
from agent_envs.envs.tau2.data import Tau2Error, domain, require_tau2
from agent_envs.envs.tau2.tasks import Tau2Tasks
from agent_envs.envs.tau2.verifier import evaluate

__all__ = ["export_bundle", "results_from_bundle"]


def _time(iso: str | None, offset_ms: int = 0) -> str:
    base = dt.datetime(1970, 1, 1)
    if iso:
        try:
            base = dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            pass
    return (base + dt.timedelta(milliseconds=offset_ms)).isoformat()


def _record(ep: Any) -> dict[str, Any]:
    rec = (ep.meta.get("episode") or {}).get("tau2")
    if not isinstance(rec, dict) or "record" not in rec:
        raise Tau2Error(f"episode {ep.episode_id} has no τ² record (meta.episode.tau2); only "
                        "bundles of the tau2 env (tau2-v0) can be exported to τ²'s format")
    return rec


def results_from_bundle(path: str | Path) -> Any:
    """τ²'s ``Results`` for the bundle at ``path``.

    Raises:
        Tau2Error: not a tau2 bundle, episodes of several domains, or an episode whose reward
            today's verifier does not reproduce (re-run or rescore the bundle first).
        BundleError: not a complete bundle.
    """
    from agent_envs.eval.bundle import load_bundle

    require_tau2()
    from tau2.data_model.simulation import (
        AgentInfo,
        Info,
        Results,
        RewardInfo,
        SimulationRun,
        UserInfo,
    )
    from tau2.environment.environment import EnvironmentInfo

    b = load_bundle(path)
    if not b.manifest.env_id.startswith("tau2-"):
        raise Tau2Error(f"{path} is a bundle of {b.manifest.env_id}, not of the tau2 env; "
                        "only tau2 bundles export to τ²'s results format")
    records = [(ep, _record(ep)) for ep in b.episodes]
    domains = sorted({r["domain"] for _, r in records} or {b.manifest.task_source.split(":")[0]})
    if len(domains) != 1:
        raise Tau2Error(f"{path} mixes τ² domains {domains}; τ²'s results file holds one "
                        "domain: export one bundle per domain")
    dom = domain(domains[0])
    source = Tau2Tasks(dom.name)
    started = b.header.get("started_at")
    sims, mismatched = [], []
    for n, (ep, rec) in enumerate(records):
        task = source.get(ep.task_id)
        env, results = replay(task, rec["record"])
        messages = tau2_messages(task, rec["record"], results)
        for i, m in enumerate(messages):
            m.turn_idx = i
            m.timestamp = _time(started, 1000 * n + i)
        reward_info = evaluate(task, messages, env, rec["termination_reason"])
        if abs(reward_info["reward"] - ep.reward) > 1e-9:
            mismatched.append(f"{ep.episode_id} (episode {ep.reward:g}, today "
                              f"{reward_info['reward']:g})")
        reward_info["info"] = {**(reward_info.get("info") or {}), "agent_envs": {
            "episode_id": ep.episode_id, "reward": ep.reward,
            "judge": (ep.meta.get("episode") or {}).get("judge")}}
        sims.append(SimulationRun(
            id=ep.episode_id, task_id=task.tau2_id, timestamp=_time(started, 1000 * n),
            start_time=_time(started, 1000 * n), end_time=_time(started, 1000 * n + len(messages)),
            duration=float(ep.total_s), termination_reason=rec["termination_reason"],
            reward_info=RewardInfo.model_validate(reward_info), messages=messages,
            trial=ep.index, seed=ep.seed))
    if mismatched:
        raise Tau2Error(f"{len(mismatched)} episode(s) of {path} score differently with today's "
                        f"verifier: {', '.join(mismatched[:5])}; the bundle was scored by "
                        "another verifier version (agent-envs eval rescore)")
    first = records[0][1] if records else {}
    sim_ids = [(ep.meta.get("episode") or {}).get("user_simulator") for ep, _ in records]
    user = next((s for s in sim_ids if s), {"kind": "unknown"})
    user_info = UserInfo(
        implementation=f"agent-envs {user.get('kind', 'unknown')} user",
        llm=user.get("model"), llm_args={k: v for k, v in user.items() if k != "model"},
        global_simulation_guidelines=None)
    h = b.header
    agent_info = AgentInfo(implementation="agent-envs tau2-v0 (gpt-oss harmony)",
                           llm=h["policy"]["model"],
                           llm_args={**h.get("sampling", {}),
                                     "reasoning_effort": h.get("reasoning_effort"),
                                     "policy_id": h["policy"]["id"]})
    info = Info(git_commit=str((h.get("package") or {}).get("commit") or "unknown"),
                num_trials=int(h["trials"]), max_steps=int(first.get("max_steps") or 200),
                max_errors=int(first.get("max_errors") or 0),
                user_info=user_info, agent_info=agent_info,
                environment_info=EnvironmentInfo(domain_name=dom.name, policy=dom.policy),
                seed=int(h["seed"]))
    tasks = [source.get(t.id).tau2_task() for t in b.manifest.tasks]
    return Results(timestamp=_time(h.get("ended_at")), info=info, tasks=tasks, simulations=sims)


def export_bundle(path: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the bundle at ``path`` as τ²'s results JSON to ``out``; return a summary
    (simulations, tasks, domain, mean reward).

    Raises:
        Tau2Error: see :func:`results_from_bundle`.
    """
    results = results_from_bundle(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.save(out)
    rewards = [s.reward_info.reward for s in results.simulations]
    return {"out": str(out), "domain": results.info.environment_info.domain_name,
            "simulations": len(results.simulations), "tasks": len(results.tasks),
            "mean_reward": sum(rewards) / len(rewards) if rewards else None}
