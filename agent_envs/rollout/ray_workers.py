"""Ray env workers: the collector's envs in Ray actors (``RolloutConfig(backend="ray")``).

The policy and the batcher stay in the driver process (one place to batch
generation); each ``EnvWorker`` actor hosts many envs (one per slot) and runs
their async ``areset``/``astep`` on its own event loop, so a worker serves many
episodes at once. Handles are spread over the workers round-robin. Needs the
``[ray]`` extra; ``ray`` is imported only here.

On a cluster, start Ray on every node (``ray start --head`` on one,
``ray start --address=HEAD:6379`` on the others) and call ``ray.init(address="auto")``
before collecting; otherwise a local Ray instance is started.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

_log = logging.getLogger(__name__)

__all__ = ["EnvWorker", "RayEnvHandle", "RayEnvPoolFactory"]


class EnvWorker:
    """Hosts envs by slot id. Wrapped with ``ray.remote`` by ``RayEnvPoolFactory``."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id = env_id
        self.env_kwargs = env_kwargs
        self.envs: dict[int, Any] = {}

    def _env(self, slot: int) -> Any:
        env = self.envs.get(slot)
        if env is None:
            import agent_envs

            env = self.envs[slot] = agent_envs.make(self.env_id, **self.env_kwargs)
        return env

    async def reset(self, slot: int, seed: int, options: dict[str, Any] | None
                    ) -> tuple[list[int], dict[str, Any], Any]:
        env = self._env(slot)
        obs, info = await env.areset(seed=seed, options=options)
        return np.asarray(obs).tolist(), info, getattr(env, "task", None)

    async def step(self, slot: int, action: list[int]
                   ) -> tuple[list[int], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = await self.envs[slot].astep(action)
        return np.asarray(obs).tolist(), float(reward), bool(terminated), bool(truncated), info

    async def close(self, slot: int) -> None:
        env = self.envs.pop(slot, None)
        if env is not None:
            await env.aclose()

    async def close_all(self) -> None:
        for slot in list(self.envs):
            await self.close(slot)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayEnvHandle:
    """One env slot in an ``EnvWorker`` actor; same coroutines as ``LocalEnvHandle``."""

    def __init__(self, actor: Any, slot: int) -> None:
        self.actor = actor
        self.slot = slot

    #: How long a new episode's reset waits for a restarting worker (it was killed or crashed)
    #: before the episode is flagged as infra.
    RESTART_WAIT_S = 120.0

    async def reset(self, seed: int, options: dict[str, Any] | None
                    ) -> tuple[list[int], dict[str, Any], Any]:
        # A reset opens the slot afresh, so it is safe to send again to the restarted actor;
        # a step is not (the env's state died with the old process) and is never retried.
        import asyncio
        import time

        from ray.exceptions import ActorUnavailableError, RayActorError

        deadline, delay = time.monotonic() + self.RESTART_WAIT_S, 0.2
        while True:
            try:
                return await self.actor.reset.remote(self.slot, seed, options)
            except (ActorUnavailableError, RayActorError):
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)

    async def step(self, action: list[int]) -> tuple[list[int], float, bool, bool, dict[str, Any]]:
        return await self.actor.step.remote(self.slot, list(action))

    async def close(self) -> None:
        await self.actor.close.remote(self.slot)


class RayEnvPoolFactory:
    """Starts ``num_workers`` ``EnvWorker`` actors and hands out env slots on them.

    Args:
        env_id: Env id for ``agent_envs.make``.
        env_kwargs: Its keyword arguments (must be picklable).
        num_workers: Actors to start.
        num_cpus: CPUs Ray reserves per actor.

    Raises:
        ImportError: ``ray`` is not installed (``pip install 'agent-envs[ray]'``).
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], num_workers: int,
                 *, num_cpus: float = 0.5) -> None:
        try:
            import ray
        except ImportError as e:
            raise ImportError(
                "backend='ray' needs Ray: pip install 'agent-envs[ray]' (or use backend='local')"
            ) from e
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        self._ray = ray
        # max_restarts: a crashed worker comes back (its episodes are flagged, later ones run).
        remote = ray.remote(num_cpus=num_cpus, max_concurrency=1000, max_restarts=-1)(EnvWorker)
        self.actors = [remote.remote(env_id, env_kwargs) for _ in range(num_workers)]
        self._slots = itertools.count()

    def new_handle(self) -> RayEnvHandle:
        slot = next(self._slots)
        return RayEnvHandle(self.actors[slot % len(self.actors)], slot)

    def worker_pids(self) -> list[int]:
        """Process ids of the worker actors (blocking; for diagnostics and fault tests)."""
        return [int(p) for p in self._ray.get([a.pid.remote() for a in self.actors])]

    async def ashutdown(self) -> None:
        """Close every env and stop the actors."""
        for actor in self.actors:
            try:
                await actor.close_all.remote()
            except Exception as e:  # noqa: BLE001 - a dead actor has nothing left to close
                _log.debug("closing envs of %r failed: %s", actor, e)
            self._ray.kill(actor)
        self.actors = []
