"""``run_eval``: a policy on a suite, resumable, into a result bundle.

The run directory holds ``run.json`` (what is being run) and ``episodes.log.jsonl``, an
append-only log with one line per finished episode, flushed and fsynced as each episode
ends. A run killed at any moment (even ``kill -9`` mid-write) loses at most the episodes in
flight: the same command again reads the log (a torn last line is cut off), skips every
(task, trial) already scored and runs the rest. Seeds derive from (seed, task id, trial),
not from the order of work, so a resumed run samples exactly what an uninterrupted one would.

Episodes flagged ``infra_error`` are retried up to ``max_infra_retries`` times; one that
still fails is excluded from the metrics and counted in them, never scored 0.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_envs.errors import AgentEnvsError
from agent_envs.eval.suites import (
    Manifest,
    SuiteMismatchError,
    build_manifest,
    get_suite,
    official_manifest,
)

__all__ = ["EvalConfig", "EvalRunError", "run_eval"]

LOG = "episodes.log.jsonl"
RUN = "run.json"


class EvalRunError(AgentEnvsError):
    """The run directory holds another run, or the run cannot proceed."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """How to run a suite.

    Attributes:
        trials: Trials per task (default: the suite's).
        concurrency: Episodes in flight.
        seed: Base seed: env and sampling seeds derive from (seed, task id, trial).
        max_infra_retries: Retries of an infra-flagged episode before it is excluded.
        allow_modified: Run even when today's suite differs from its pinned manifest; the
            bundle is then labelled unofficial.
        reasoning_effort: Overrides the suite's reasoning effort (recorded in the header).
        temperature, top_p: Sampling settings.
        max_tokens: Cap on one completion.
        model: Model id for the header (default: the policy id).
        progress: Show a progress bar with the running score.
        env_url: Run the suite's envs on the ``agent-envs serve`` server at this URL, or on
            several (a list, or one string with commas: each session goes to the least-loaded
            live one); default: in this process. The env code there must match the pin, as
            here.
        env_args: Env arguments that are not part of the suite: only those the suite's env
            lists in its ``eval_args`` (for tau2: the simulated ``user``, ``record_user``, a
            ``judge``). Objects are recorded in the run identity and the bundle header by
            their ``identity()``.
        limit: Run only a seeded sample of this many tasks, stratified by category
            (:meth:`Manifest.sample` with ``seed``); the bundle's header records it and its
            metrics cover the sample. Default: every task.
    """

    trials: int | None = None
    concurrency: int = 16
    seed: int = 0
    max_infra_retries: int = 2
    allow_modified: bool = False
    reasoning_effort: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 4096
    model: str | None = None
    progress: bool = True
    env_url: str | Sequence[str] | None = None
    env_args: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 task (or None for the whole suite), got "
                             f"{self.limit!r}")
        if self.env_url is not None:
            from agent_envs.server.fleet import parse_urls

            parse_urls(self.env_url, what="env_url")  # a bad URL fails here, not per episode
        if self.trials is not None and self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if self.max_infra_retries < 0:
            raise ValueError(f"max_infra_retries must be >= 0, got {self.max_infra_retries!r}")
        if self.reasoning_effort not in (None, "low", "medium", "high"):
            raise ValueError(f"reasoning_effort must be low, medium or high, got "
                             f"{self.reasoning_effort!r}")


def resolve_manifest(suite: str, allow_modified: bool) -> tuple[Manifest, str]:
    """Today's manifest of ``suite`` and its status: official, unofficial or unpinned.

    Raises:
        SuiteMismatchError: It differs from the pinned manifest and ``allow_modified`` is off.
    """
    spec = get_suite(suite)
    manifest = build_manifest(spec)
    pinned = official_manifest(suite) if spec.pinned else None
    if pinned is None:
        return manifest, "unpinned"
    if pinned.hash == manifest.hash:
        return manifest, "official"
    if not allow_modified:
        raise SuiteMismatchError(
            f"suite {suite!r} as built by this code ({manifest.hash[:12]}) differs from its "
            f"pinned manifest v{pinned.version} ({pinned.hash[:12]}): {pinned.diff(manifest)}. "
            "Results would not be comparable. Use the agent-envs version that matches the "
            "manifest, or pass --allow-modified to run it labelled unofficial.")
    return manifest, "unofficial"


def _read_log(path: Path) -> list[dict[str, Any]]:
    """Complete records of the log; a torn last line (a kill mid-write) is cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return [json.loads(line) for line in data[:good].decode().splitlines() if line.strip()]


def _run_identity(manifest: Manifest, status: str, policy: Any, cfg: EvalConfig,
                  trials: int) -> dict[str, Any]:
    identity = {"suite": manifest.name, "suite_hash": manifest.hash, "suite_status": status,
                "policy_id": str(policy.policy_id), "policy_version": str(policy.version),
                "model": cfg.model or str(policy.policy_id), "trials": trials, "seed": cfg.seed,
                "reasoning_effort": cfg.reasoning_effort or "medium",
                "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p,
                             "max_tokens": cfg.max_tokens},
                "max_infra_retries": cfg.max_infra_retries}
    if cfg.limit is not None and cfg.limit < len(manifest.tasks):
        identity["limit"] = cfg.limit  # absent for whole-suite runs (older run.json match)
    return identity


def _env_args_identity(manifest: Manifest, env_args: Mapping[str, Any]) -> dict[str, Any]:
    """What ``env_args`` records in the run identity (objects by their ``identity()``).

    Raises:
        EvalRunError: an argument the suite's env does not let an eval run set.
    """
    import agent_envs
    from agent_envs.core import to_jsonable

    allowed = tuple(getattr(agent_envs.spec(manifest.env_id).load(), "eval_args", ()))
    bad = sorted(set(env_args) - set(allowed))
    if bad:
        raise EvalRunError(
            f"env argument(s) {', '.join(bad)} would change suite {manifest.name!r}: an eval "
            f"run of {manifest.env_id} may set only {', '.join(allowed) or 'none'} (the rest "
            "is pinned by the suite's manifest)")
    return {k: to_jsonable(v.identity() if callable(getattr(v, "identity", None)) else v)
            for k, v in sorted(env_args.items())}


def run_eval(suite: str, policy: Any, out_dir: str | Path, config: EvalConfig | None = None,
             *, on_progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Run ``policy`` on ``suite`` into the bundle directory ``out_dir`` (resuming it).

    Args:
        suite: Suite name (``agent-envs eval list``).
        policy: An ``agent_envs.rollout.Policy``.
        out_dir: The run and bundle directory. Running again into it resumes.
        config: Trials, concurrency, seeds, retries.
        on_progress: Called with (scored episodes, total, running accuracy) as episodes end.

    Returns:
        ``out_dir``, now a complete bundle (``verify``-able), with ``out_dir.tar.gz`` beside it.

    Raises:
        SuiteMismatchError: The suite changed and ``allow_modified`` is off.
        EvalRunError: ``out_dir`` holds a different run (suite, policy, seed or trials).
    """
    from agent_envs.eval.bundle import write_bundle
    from agent_envs.rollout import Episode, RolloutCollector, RolloutConfig, SamplingParams

    cfg = config or EvalConfig()
    out = Path(out_dir)
    manifest, status = resolve_manifest(suite, cfg.allow_modified)
    trials = cfg.trials or manifest.trials
    identity = _run_identity(manifest, status, policy, cfg, trials)
    if cfg.env_args:
        identity["env_args"] = _env_args_identity(manifest, cfg.env_args)
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / RUN
    if run_path.exists():
        previous = json.loads(run_path.read_text())
        if previous["identity"] != identity:
            changed = sorted(k for k in {*identity, *previous["identity"]}
                             if previous["identity"].get(k) != identity.get(k))
            raise EvalRunError(
                f"{out} holds another run (it differs in {', '.join(changed)}); resume it with "
                "the same settings, or choose a new --out directory.")
        previous["resumes"] = previous.get("resumes", 0) + 1
        run = previous
    else:
        run = {"identity": identity, "started_at": time.time(), "resumes": 0}
    run_path.write_text(json.dumps(run, indent=1))

    log_path = out / LOG
    records = _read_log(log_path)
    scored: dict[tuple[str, int], dict[str, Any]] = {}
    attempts: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r["task_id"], r["trial"])
        attempts[key] = attempts.get(key, 0) + 1
        if r["episode"]["infra_error"] is None:
            scored.setdefault(key, r)
    limit = identity.get("limit")
    order = list(manifest.sample(limit, cfg.seed) if limit else (t.id for t in manifest.tasks))
    position = {t: i for i, t in enumerate(order)}
    total = len(order) * trials
    n_correct = sum(bool((r["episode"]["verdict"] or {}).get("correct")) for r in scored.values())

    def pending() -> list[tuple[str, int]]:
        return [(t, i) for t in order for i in range(trials)
                if (t, i) not in scored and attempts.get((t, i), 0) <= cfg.max_infra_retries]

    env_kwargs = dict(manifest.env_kwargs, task_source=manifest.task_source, **cfg.env_args)
    if cfg.reasoning_effort:
        env_kwargs["reasoning_effort"] = cfg.reasoning_effort
    sampling = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p)

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=len(scored), desc=f"eval {suite}", unit="ep")

    with open(log_path, "a", encoding="utf-8") as log:
        def record(ep: Episode) -> None:
            nonlocal n_correct, new
            key = (ep.task_id or "", ep.index)
            todo = key not in scored and attempts.get(key, 0) <= cfg.max_infra_retries
            if not todo or key not in wanted:
                return  # a trial of a group re-run only for its other trials
            attempts[key] = attempts.get(key, 0) + 1
            rec = {"task_id": key[0], "trial": key[1], "attempt": attempts[key],
                   "episode": ep.to_dict()}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            os.fsync(log.fileno())
            new += 1
            if ep.infra_error is None:
                scored[key] = rec
                n_correct += bool(ep.solved)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(score=f"{n_correct / len(scored):.3f}",
                                    infra=len(attempts) - len(scored))
            if on_progress is not None:
                on_progress(len(scored), total, n_correct / max(len(scored), 1))

        new = 0
        try:
            while True:
                wanted = set(pending())
                if not wanted:
                    break
                new = 0
                tasks = tuple(dict.fromkeys(t for t, _ in sorted(
                    wanted, key=lambda k: (position[k[0]], k[1]))))
                rc = RolloutConfig(env_id=manifest.env_id, env_kwargs=env_kwargs,
                                   num_groups=len(tasks), group_size=trials,
                                   concurrency=cfg.concurrency, max_tokens=cfg.max_tokens,
                                   sampling=sampling, seed=cfg.seed, task_ids=tasks,
                                   group_keys=tasks, progress=False, env_url=cfg.env_url)
                RolloutCollector(policy, rc, on_episode=record).collect()
                if new == 0:
                    raise EvalRunError(f"a round of {len(wanted)} pending episodes recorded "
                                       "none; the collector returned no episode for them")
        finally:
            if bar is not None:
                bar.close()

    run["ended_at"] = time.time()
    run_path.write_text(json.dumps(run, indent=1))
    excluded = sorted(k for k in attempts if k not in scored)
    episodes = [Episode.from_dict(scored[(t, i)]["episode"])
                for t in order for i in range(trials) if (t, i) in scored]
    retried = sum(n - 1 for n in attempts.values() if n > 1)
    return write_bundle(out, manifest=manifest, run=run, episodes=episodes,
                        excluded=[list(k) for k in excluded], infra_retries=retried)
