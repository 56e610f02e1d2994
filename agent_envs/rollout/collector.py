"""``RolloutCollector``: drive many environments concurrently and record ``Episode``s.

One asyncio loop runs every episode as a task. Episodes never call the policy
themselves: they hand a ``SampleRequest`` to a batcher, which gathers pending
requests for a short window (or until the batch is full, or until every live
episode is waiting) and sends them in one ``policy.asample`` call. Env work runs
in the same process (``backend="local"``) or in Ray actors (``backend="ray"``,
see ``agent_envs.rollout.ray_workers``) when env workers outgrow one machine.

GRPO grouping: ``num_groups`` groups of ``group_size`` (G) episodes; the
episodes of a group share the env seed (so the task and the tool behaviour are
the same) and differ in their sampling seeds. All seeds derive from
``RolloutConfig.seed``, so a run is reproducible given a seeded policy.

Faults never lose episodes: a policy error, an env exception, an env
``infra_error`` or the per-episode wall-time limit ends that episode with
``Episode.infra_error`` set, and the run goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent_envs.core import derive_seed, to_jsonable
from agent_envs.rollout.episode import Episode, Segment, Turn, save_episodes
from agent_envs.rollout.errors import RolloutConfigError
from agent_envs.rollout.policy import (
    EpisodeContext,
    Policy,
    Sample,
    SampleRequest,
    SamplingParams,
)

_log = logging.getLogger(__name__)

__all__ = [
    "LocalEnvHandle", "RolloutCollector", "RolloutConfig", "RolloutConfigError", "derive_seed",
    "draw_tasks", "run_rollout_cli", "summarize",
]


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """What to collect and how.

    Attributes:
        env_id: Registered env id (``"python-tool"`` or ``"python-tool-v0"``).
        env_kwargs: Passed to ``agent_envs.make`` for every env.
        num_groups: Number of groups (distinct tasks / seeds).
        group_size: G: episodes per group, same seed and task (GRPO).
        concurrency: Most episodes running at once (and envs alive at once).
        max_batch_size: Most requests per ``policy.asample`` call.
        batch_window_s: How long the batcher waits for more requests before
            sending a partial batch (it sends at once when every running
            episode is waiting on the policy).
        max_inflight_batches: ``asample`` calls in flight at once.
        max_tokens: Cap on one completion (also capped by the env's
            ``info["max_new_tokens"]``).
        sampling: Temperature / top-p / top-k; the seed field is ignored (each
            turn of each episode gets its own derived seed).
        episode_timeout_s: Wall-time limit of one episode (None: no limit);
            an episode past it is recorded with ``infra_error``.
        seed: Base seed every env seed and sampling seed derives from.
        task_ids: If given, group ``g`` runs ``task_ids[g % len(task_ids)]``.
        group_keys: If given (one per group), group ``g``'s env and sampling seeds derive
            from ``group_keys[g]`` instead of its position ``g``, so a group's episodes are
            the same whichever other groups run with it (resumable evals use task ids).
        backend: ``"local"`` (envs in this process) or ``"ray"`` (envs in Ray actors).
        ray_workers: Number of Ray env-worker actors (``backend="ray"``).
        progress: Show a tqdm progress bar.
        env_url: Run the envs on the ``agent-envs serve`` server at this URL
            (``agent_envs.remote``) instead of in this process; several servers: a list of
            URLs, or one string with commas (each session goes to the least-loaded live one;
            :mod:`agent_envs.server.fleet`); None: the ``AGENT_ENVS_ENV_URL`` environment
            variable if set, else local. Either is an error with ``backend="ray"``.
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_groups: int = 1
    group_size: int = 1
    concurrency: int = 32
    max_batch_size: int = 64
    batch_window_s: float = 0.005
    max_inflight_batches: int = 4
    max_tokens: int = 4096
    sampling: SamplingParams = field(default_factory=SamplingParams)
    episode_timeout_s: float | None = 900.0
    seed: int = 0
    task_ids: tuple[str, ...] | None = None
    group_keys: tuple[str, ...] | None = None
    backend: Literal["local", "ray"] = "local"
    ray_workers: int = 2
    progress: bool = True
    env_url: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name in ("num_groups", "group_size", "concurrency", "max_batch_size",
                     "max_inflight_batches", "max_tokens", "ray_workers"):
            if int(getattr(self, name)) < 1:
                raise RolloutConfigError(
                    f"RolloutConfig.{name} must be >= 1, got {getattr(self, name)!r}."
                )
        if self.backend not in ("local", "ray"):
            raise RolloutConfigError(
                f"RolloutConfig.backend must be 'local' or 'ray', got {self.backend!r}."
            )
        if self.episode_timeout_s is not None and not self.episode_timeout_s > 0:
            raise RolloutConfigError(
                f"RolloutConfig.episode_timeout_s must be > 0 or None, got "
                f"{self.episode_timeout_s!r}."
            )
        if self.batch_window_s < 0:
            raise RolloutConfigError(
                f"RolloutConfig.batch_window_s must be >= 0, got {self.batch_window_s!r}."
            )
        if self.env_url is not None:
            from agent_envs.server.fleet import parse_urls

            try:
                parse_urls(self.env_url, what="RolloutConfig.env_url")
            except ValueError as e:
                raise RolloutConfigError(str(e)) from None
        if self.env_url is not None and self.backend != "local":
            raise RolloutConfigError(
                f"RolloutConfig.env_url ({self.env_url!r}) works with backend='local': the "
                "envs already run on the server. Drop backend='ray' or env_url."
            )
        if self.group_keys is not None and len(self.group_keys) != self.num_groups:
            raise RolloutConfigError(
                f"RolloutConfig.group_keys has {len(self.group_keys)} keys for "
                f"{self.num_groups} groups; give one key per group."
            )

    @property
    def num_episodes(self) -> int:
        """``num_groups * group_size``."""
        return self.num_groups * self.group_size


def draw_tasks(env_id: str, num_tasks: int, *, seed: int = 0, split: str = "train",
               env_kwargs: Mapping[str, Any] | None = None) -> list[Any]:
    """The tasks a trainer's dataset holds: task ``i`` is
    ``env.task_source.sample(derive_seed(seed, "task", i), split)`` of ``env_id`` made with
    ``env_kwargs`` (the TRL, verl and SkyRL adapters all write their datasets from this)."""
    import agent_envs

    env = agent_envs.make(env_id, **dict(env_kwargs or {}))
    try:
        return [env.task_source.sample(derive_seed(seed, "task", i), split)
                for i in range(num_tasks)]
    finally:
        env.close()


# -- env handles --------------------------------------------------------------------------------


class LocalEnvHandle:
    """An env in this process, behind the handle interface the collector uses.

    The Ray backend provides the same four coroutines (``reset``, ``step``,
    ``close``) over an actor; see ``agent_envs.rollout.ray_workers.RayEnvHandle``.
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    async def reset(self, seed: int, options: dict[str, Any] | None
                    ) -> tuple[list[int], dict[str, Any], Any]:
        obs, info = await self.env.areset(seed=seed, options=options)
        return np.asarray(obs).tolist(), info, getattr(self.env, "task", None)

    async def step(self, action: list[int]) -> tuple[list[int], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = await self.env.astep(action)
        return np.asarray(obs).tolist(), float(reward), bool(terminated), bool(truncated), info

    async def close(self) -> None:
        await self.env.aclose()


class _EnvPool:
    """Reuses envs across episodes; a handle that saw a fault is closed, not reused."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._idle: list[Any] = []
        self._all: set[Any] = set()

    async def acquire(self) -> Any:
        if self._idle:
            return self._idle.pop()
        handle = self._factory()
        if asyncio.iscoroutine(handle):
            handle = await handle
        self._all.add(handle)
        return handle

    async def release(self, handle: Any, healthy: bool) -> None:
        if healthy:
            self._idle.append(handle)
            return
        self._all.discard(handle)
        await _close_quietly(handle)

    async def close(self) -> None:
        handles, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(_close_quietly(h) for h in handles))


async def _close_quietly(handle: Any) -> None:
    try:
        await asyncio.wait_for(handle.close(), timeout=30)
    except Exception as e:  # noqa: BLE001 - a broken env must not break the run's cleanup
        _log.debug("closing env handle %r failed: %s", handle, e)


# -- batching -----------------------------------------------------------------------------------


class _Batcher:
    """Gathers SampleRequests from many episodes into ``policy.asample`` calls."""

    def __init__(self, policy: Policy, cfg: RolloutConfig) -> None:
        self.policy = policy
        self.max_batch = cfg.max_batch_size
        self.window_s = cfg.batch_window_s
        self.slots = asyncio.Semaphore(cfg.max_inflight_batches)
        self.pending: list[tuple[SampleRequest, asyncio.Future[Sample]]] = []
        self.active = 0  # episodes running (the collector keeps this up to date)
        self.inflight = 0  # requests inside asample calls
        self.batches = 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: SampleRequest) -> Sample:
        fut: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()
        self.pending.append((request, fut))
        self._wake.set()
        return await fut

    def poke(self) -> None:
        self._wake.set()

    def _ready(self) -> bool:
        # Everyone who could add a request is already waiting: no point in waiting longer.
        return len(self.pending) >= self.max_batch or len(self.pending) >= self.active - self.inflight

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.pending:
                continue
            deadline = loop.time() + self.window_s
            while not self._ready() and loop.time() < deadline:
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                self._wake.clear()
            await self.slots.acquire()
            # Episodes that hit their wall-time limit left cancelled futures behind.
            self.pending = [(r, f) for r, f in self.pending if not f.done()]
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            if not batch:
                self.slots.release()
                continue
            self.inflight += len(batch)
            task = asyncio.create_task(self._dispatch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if self.pending:
                self._wake.set()

    async def _dispatch(self, batch: list[tuple[SampleRequest, asyncio.Future[Sample]]]) -> None:
        self.batches += 1
        try:
            samples = await self.policy.asample([r for r, _ in batch])
            if len(samples) != len(batch):
                raise RuntimeError(f"{self.policy!r} returned {len(samples)} samples for "
                                   f"{len(batch)} requests")
        except Exception as e:  # noqa: BLE001 - recorded on every episode of the batch
            samples = [Sample.failed(f"policy call failed: {type(e).__name__}: {e}")] * len(batch)
        finally:
            self.inflight -= len(batch)
            self.slots.release()
        for (_, fut), s in zip(batch, samples):
            if not fut.done():
                fut.set_result(s)
        self._wake.set()


# -- the collector ------------------------------------------------------------------------------


class RolloutCollector:
    """Runs ``config.num_groups x config.group_size`` episodes of ``policy`` on ``config.env_id``.

    Args:
        policy: Any ``Policy``; policies with ``wants_context`` get an
            ``EpisodeContext`` (the task) in each request.
        config: What to collect.
        env_factory: Makes one env (default: ``agent_envs.make(env_id, **env_kwargs)``);
            local backend only.
        on_episode: Called with each episode as soon as it ends (e.g. to append it to a
            log), in completion order.

    Example:
        >>> cfg = RolloutConfig(env_id="python-tool", num_groups=8, group_size=4)
        >>> episodes = RolloutCollector(OraclePolicy(), cfg).collect()
    """

    def __init__(self, policy: Policy, config: RolloutConfig,
                 env_factory: Callable[[], Any] | None = None,
                 on_episode: Callable[[Episode], None] | None = None) -> None:
        if env_factory is not None and config.backend != "local":
            raise RolloutConfigError(
                "env_factory works with backend='local' only; with backend='ray' the actors "
                "build envs from env_id and env_kwargs (which must be picklable)."
            )
        self.policy = policy
        self.config = config
        self.env_factory = env_factory
        self.on_episode = on_episode
        self.stats: dict[str, float] = {}
        #: The ``RayEnvPoolFactory`` while a ``backend="ray"`` run is in progress, else None.
        self.ray_pool: Any = None

    def collect(self) -> list[Episode]:
        """Run every episode; returns them ordered by (group, index)."""
        return asyncio.run(self.acollect())

    async def acollect(self) -> list[Episode]:
        """Async twin of ``collect``."""
        cfg = self.config
        t0 = time.perf_counter()
        pool, shutdown = await self._make_pool()
        batcher = _Batcher(self.policy, cfg)
        batcher_task = asyncio.create_task(batcher.run())
        sem = asyncio.Semaphore(cfg.concurrency)
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.num_episodes, desc=f"rollout {cfg.env_id}", unit="ep",
                   disable=not cfg.progress, leave=False)
        done: list[Episode] = []

        async def one(g: int, i: int) -> Episode:
            async with sem:
                batcher.active += 1
                try:
                    ep = await self._episode(pool, batcher, g, i)
                finally:
                    batcher.active -= 1
                    batcher.poke()
            done.append(ep)
            if self.on_episode is not None:
                self.on_episode(ep)
            bar.update(1)
            bar.set_postfix(reward=f"{np.mean([e.reward for e in done]):.3f}",
                            infra=sum(e.infra for e in done), refresh=False)
            return ep

        try:
            episodes = await asyncio.gather(*(one(g, i) for g in range(cfg.num_groups)
                                              for i in range(cfg.group_size)))
        finally:
            bar.close()
            batcher_task.cancel()
            await asyncio.gather(batcher_task, return_exceptions=True)
            await pool.close()
            await shutdown()
        self.stats = {"wall_s": time.perf_counter() - t0, "batches": batcher.batches,
                      "requests": sum(len(e.turns) for e in episodes)}
        return list(episodes)

    async def _make_pool(self) -> tuple[_EnvPool, Callable[[], Any]]:
        cfg = self.config
        url = cfg.env_url or os.environ.get("AGENT_ENVS_ENV_URL") or None
        if cfg.backend == "ray":
            if url is not None:  # env_url itself is refused in __post_init__
                raise RolloutConfigError(
                    f"the AGENT_ENVS_ENV_URL environment variable is set ({url!r}), but "
                    "RolloutConfig.backend='ray' runs the envs on Ray workers, not on that "
                    "server. Unset AGENT_ENVS_ENV_URL, or use backend='local' to run the envs "
                    "on the server.")
            from agent_envs.rollout.ray_workers import RayEnvPoolFactory

            factory = RayEnvPoolFactory(cfg.env_id, dict(cfg.env_kwargs), cfg.ray_workers)
            self.ray_pool = factory

            async def shutdown() -> None:
                self.ray_pool = None
                await factory.ashutdown()

            return _EnvPool(factory.new_handle), shutdown

        def make_local() -> LocalEnvHandle:
            if self.env_factory is not None:
                return LocalEnvHandle(self.env_factory())
            import agent_envs

            if url is not None:  # envs on an `agent-envs serve` server
                # A policy that reads the task (the oracle) asks for it: the server grants
                # that to holders of its token only (AGENT_ENVS_SERVER_TOKEN).
                return LocalEnvHandle(agent_envs.remote(
                    url, cfg.env_id, full_task=bool(self.policy.wants_context),
                    **dict(cfg.env_kwargs)))
            return LocalEnvHandle(agent_envs.make(cfg.env_id, **dict(cfg.env_kwargs)))

        async def nothing() -> None:
            return None

        return _EnvPool(make_local), nothing

    async def _episode(self, pool: _EnvPool, batcher: _Batcher, g: int, i: int) -> Episode:
        cfg = self.config
        env_id = cfg.env_id if "-v" in cfg.env_id else f"{cfg.env_id}-v0"
        key: object = g if cfg.group_keys is None else cfg.group_keys[g]
        ep = Episode(
            episode_id=f"g{g}-e{i}", env_id=env_id, env_version=env_id.rsplit("-", 1)[-1],
            task_id=cfg.task_ids[g % len(cfg.task_ids)] if cfg.task_ids else None,
            group_id=g, index=i, seed=derive_seed(cfg.seed, "env", key),
            sample_seed=derive_seed(cfg.seed, "sample", key, i),
            policy_id=str(self.policy.policy_id), policy_version=str(self.policy.version),
        )
        t0 = time.perf_counter()
        healthy = False
        handle = None
        try:
            handle = await pool.acquire()
            coro = self._drive(handle, batcher, ep)
            if cfg.episode_timeout_s is None:
                await coro
            else:
                await asyncio.wait_for(coro, cfg.episode_timeout_s)
            healthy = ep.infra_error is None
        except asyncio.TimeoutError:
            ep.infra_error = (f"episode exceeded the collector's wall-time limit "
                              f"(episode_timeout_s={cfg.episode_timeout_s})")
            ep.truncated, ep.truncated_reason = True, "infra"
        except Exception as e:  # noqa: BLE001 - an env crash flags this episode only
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            ep.infra_error = f"env raised {tb}"
            ep.truncated, ep.truncated_reason = True, "infra"
        finally:
            if handle is not None:
                await pool.release(handle, healthy)
        ep.total_s = time.perf_counter() - t0
        return ep

    async def _drive(self, handle: Any, batcher: _Batcher, ep: Episode) -> None:
        cfg = self.config
        options = {"task_id": ep.task_id} if ep.task_id else None
        t = time.perf_counter()
        obs, info, task = await handle.reset(ep.seed, options)
        ep.env_s += time.perf_counter() - t
        ep.task_id = info.get("task_id", ep.task_id)
        ep.env_id = info.get("env_id", ep.env_id)
        ep.env_version = ep.env_id.rsplit("-", 1)[-1]
        seg = Segment(prompt=list(obs))
        ep.segments.append(seg)
        while True:
            turn_no = len(ep.turns)
            budget = info.get("max_new_tokens") or cfg.max_tokens
            params = dataclasses.replace(cfg.sampling, seed=derive_seed(ep.sample_seed, turn_no))
            ctx = (EpisodeContext(task=task, env_id=ep.env_id, episode_id=ep.episode_id,
                                  turn=turn_no) if self.policy.wants_context else None)
            req = SampleRequest(prompt=obs, max_tokens=max(1, min(cfg.max_tokens, int(budget))),
                                params=params, context=ctx)
            t = time.perf_counter()
            sample = await batcher.submit(req)
            policy_s = time.perf_counter() - t
            ep.policy_s += policy_s
            if sample.finish_reason == "error":
                ep.infra_error = f"policy error: {sample.error}"
                ep.truncated, ep.truncated_reason = True, "infra"
                return
            start, end = seg.add_sampled(sample.token_ids, sample.logprobs)
            turn = Turn(segment=len(ep.segments) - 1, start=start, end=end,
                        finish_reason=sample.finish_reason, policy_s=policy_s)
            ep.turns.append(turn)
            t = time.perf_counter()
            new_obs, reward, terminated, truncated, info = await handle.step(sample.token_ids)
            turn.env_s = time.perf_counter() - t
            ep.env_s += turn.env_s
            turn.tool_outcome = to_jsonable(info.get("tool_outcome"))
            turn.model_error = info.get("model_error")
            if info.get("infra_error"):
                ep.infra_error = str(info["infra_error"])
            if terminated or truncated or ep.infra_error:
                ep.reward = float(reward)
                ep.reward_components = {k: float(v) for k, v in
                                        (info.get("reward_components") or {}).items()}
                ep.terminated, ep.truncated = bool(terminated), bool(truncated)
                ep.truncated_reason = info.get("truncated_reason")
                ep.verdict = to_jsonable(info.get("verdict"))
                ep.meta["episode"] = to_jsonable(info.get("episode"))
                return
            if info.get("new_segment"):
                seg = Segment(prompt=list(new_obs))
                ep.segments.append(seg)
            else:
                expected = obs + sample.token_ids
                if new_obs[: len(expected)] != expected:
                    ep.infra_error = ("env broke the prefix invariant: the observation does not "
                                      "extend obs + action and new_segment is False")
                    ep.truncated, ep.truncated_reason = True, "infra"
                    return
                seg.add_env(new_obs[len(expected):])
                turn.env_tokens = len(new_obs) - len(expected)
            obs = new_obs


# -- summaries and the CLI ----------------------------------------------------------------------


def summarize(episodes: Sequence[Episode], wall_s: float) -> dict[str, Any]:
    """Run summary: counts, mean reward, solved fraction, infra count, turns, tokens, rate.

    Means over no usable episode (all infra-flagged) are None, so the summary is strict JSON.
    """
    n = len(episodes)
    ok = [e for e in episodes if not e.infra]
    errors: dict[str, int] = {}
    for e in episodes:
        if e.infra_error:
            key = e.infra_error[:120]
            errors[key] = errors.get(key, 0) + 1
    return {
        "episodes": n,
        # None (JSON null), not NaN, when every episode was infra-flagged: NaN is not JSON.
        "mean_reward": float(np.mean([e.reward for e in ok])) if ok else None,
        "solved_frac": float(np.mean([e.solved for e in ok])) if ok else None,
        "infra_flagged": n - len(ok),
        "infra_errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
        "turns": sum(len(e.turns) for e in episodes),
        "tool_calls": sum(1 for e in episodes for t in e.turns if t.tool_outcome),
        "sampled_tokens": sum(e.num_sampled_tokens for e in episodes),
        "total_tokens": sum(len(s.prompt) + len(s.completion) for e in episodes
                            for s in e.segments),
        "env_s": sum(e.env_s for e in episodes),
        "policy_s": sum(e.policy_s for e in episodes),
        "wall_s": wall_s,
        "episodes_per_s": n / wall_s if wall_s > 0 else None,
    }


def run_rollout_cli(
    env_id: str,
    policy_spec: str | Policy,
    episodes: int,
    out: str | Path | None,
    *,
    concurrency: int = 32,
    group_size: int = 1,
    seed: int = 0,
    model: str | None = None,
    max_tokens: int = 4096,
    temperature: float = 1.0,
    top_p: float = 1.0,
    env_kwargs: Mapping[str, Any] | None = None,
    backend: Literal["local", "ray"] = "local",
    ray_workers: int = 2,
    episode_timeout_s: float | None = 900.0,
    progress: bool = True,
    env_url: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """What ``agent-envs rollout ENV --policy SPEC --episodes N --out FILE`` runs.

    Args:
        env_id: Env id.
        policy_spec: A spec for ``policy_from_spec`` or a ``Policy``.
        episodes: Total episodes; must be a multiple of ``group_size``.
        out: ``.jsonl``/``.jsonl.gz``/``.parquet`` file to write, or None.
        concurrency: Episodes at once.
        group_size: Episodes per task (GRPO G).
        seed: Base seed.
        model: Served model name for an HTTP policy.
        max_tokens: Cap on one completion.
        temperature: Sampling temperature.
        top_p: Nucleus sampling threshold.
        env_kwargs: Passed to ``agent_envs.make``.
        backend: ``local`` or ``ray``.
        ray_workers: Ray env-worker actors.
        episode_timeout_s: Per-episode wall-time limit.
        progress: Show a progress bar.
        env_url: Run the envs on the ``agent-envs serve`` server at this URL (or on
            several: a list, or commas).

    Returns:
        ``summarize(...)`` plus ``out`` (the file written, or None).
    """
    if episodes < 1 or group_size < 1 or episodes % group_size:
        raise RolloutConfigError(
            f"--episodes ({episodes}) must be a positive multiple of --group-size "
            f"({group_size}); e.g. --episodes {max(1, episodes // max(group_size, 1)) * group_size}."
        )
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise RolloutConfigError("--backend ray needs Ray, which is not installed: pip install "
                                 "'agent-envs[ray]' (or use --backend local)")
    from agent_envs.rollout.specs import policy_from_spec

    policy = policy_spec if isinstance(policy_spec, Policy) else policy_from_spec(
        policy_spec, model=model)
    cfg = RolloutConfig(
        env_id=env_id, env_kwargs=dict(env_kwargs or {}), num_groups=episodes // group_size,
        group_size=group_size, concurrency=concurrency, seed=seed, max_tokens=max_tokens,
        sampling=SamplingParams(temperature=temperature, top_p=top_p), backend=backend,
        ray_workers=ray_workers, episode_timeout_s=episode_timeout_s, progress=progress,
        env_url=env_url,
    )
    t0 = time.perf_counter()
    try:
        eps = RolloutCollector(policy, cfg).collect()
    finally:
        if not isinstance(policy_spec, Policy):
            policy.close()
    wall = time.perf_counter() - t0
    written = save_episodes(eps, out) if out is not None else None
    summary = summarize(eps, wall)
    summary["out"] = str(written) if written else None
    return summary
