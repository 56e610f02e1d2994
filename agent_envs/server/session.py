"""One server session: a gymnasium env from ``agent_envs`` behind OpenEnv's ``Environment``.

:class:`HarmonyEnvironment` runs the env in a thread of its own and speaks token ids
(:mod:`agent_envs.server.models`), sending observations as deltas with a prefix hash, their
decoded text, and only what a model may see (:mod:`agent_envs.server.public`). A reset or
step past the step timeout returns an in-band ``step_timeout`` error (the episode ends,
truncated, ``infra_error`` set) and the session's env is closed and replaced, so the session
stays usable; an env whose making timed out is closed once made, and an env whose reset or
step timed out is closed again once that call returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

import agent_envs
from agent_envs.errors import AgentEnvsError, EnvStateError, InvalidActionError, UnknownTaskError
from agent_envs.harmony import get_codec
from agent_envs.server._openenv import Environment, EnvironmentMetadata
from agent_envs.server.models import EnvSessionState, TokenAction, TokenObservation
from agent_envs.server.protocol import (
    ERROR_BAD_REQUEST,
    ERROR_INFRA,
    ERROR_SESSION_CLOSED,
    ERROR_STEP_TIMEOUT,
    TOKEN_ENV_VAR,
    RunningHash,
    to_jsonable,
)
from agent_envs.server.public import public_info, public_task

__all__ = ["HarmonyEnvironment", "ServerSettings"]

_log = logging.getLogger(__name__)

_CALLER_ERRORS = (InvalidActionError, EnvStateError, UnknownTaskError, ValueError, TypeError,
                  KeyError)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How the server runs its sessions.

    Attributes:
        env_id: The registered env every session runs (``"python-tool"``).
        env_kwargs: Arguments for ``agent_envs.make``; they are pinned: a client may add
            other kwargs but not change these.
        max_sessions: Most WebSocket sessions at once; one more is refused in-band.
        idle_timeout_s: A session with no message for this long is closed (its env too);
            None: never.
        step_timeout_s: A reset or step running longer ends the episode with an in-band
            ``step_timeout`` error; None: no limit.
        env_factory: Builds the env from the merged kwargs instead of ``agent_envs.make``
            (tests use it for envs that are not registered).
        token: Requests must present this token (``Authorization: Bearer TOKEN``) to reach
            anything but ``/health``; it also gates the full task (``full_task``). None: no
            authentication (fine on loopback; ``run_server`` warns on other addresses).
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_sessions: int = 64
    idle_timeout_s: float | None = 600.0
    step_timeout_s: float | None = 600.0
    env_factory: Callable[..., Any] | None = None
    token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.token is not None and (not isinstance(self.token, str) or not self.token
                                       or self.token != self.token.strip()
                                       or not self.token.isprintable()):
            raise ValueError("the server token must be a non-empty string of printable "
                             "characters without surrounding spaces (it travels in an HTTP "
                             "header); e.g. --token \"$(openssl rand -hex 16)\"")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions!r}")
        for name in ("idle_timeout_s", "step_timeout_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {v!r}")
        agent_envs.spec(self.env_id)  # an unknown id fails here, with "did you mean"

    @property
    def served_id(self) -> str:
        """The versioned id of the served env."""
        return agent_envs.spec(self.env_id).id


class _Reply(Exception):
    """Internal: end a handler early with this observation."""

    def __init__(self, obs: TokenObservation) -> None:
        super().__init__(obs.error)
        self.obs = obs


class HarmonyEnvironment(Environment[TokenAction, TokenObservation, EnvSessionState]):
    """One session: a gymnasium env from ``agent_envs`` behind OpenEnv's ``Environment``.

    The env is made at the first reset (with the client's extra kwargs) and runs in a thread
    of its own, so a step that hangs can be abandoned (see ``ServerSettings.step_timeout_s``).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session has its own env and thread

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__()
        self.settings = settings
        self._env: Any = None
        self._kwargs: dict[str, Any] | None = None
        self._pool: _Worker | None = None
        self._last_obs: np.ndarray | None = None
        self._hash: RunningHash | None = None  # of _last_obs
        self._last_info: dict[str, Any] = {}
        self._active = False
        self._episode_id: str | None = None
        self._steps = 0
        self._full = False  # this episode's client was granted the full task
        self.busy = False
        #: Why the server closed this session (reaped), or None while it is open.
        self.closed_reason: str | None = None
        #: The /ws connection the session serves (the reaper closes it), if any.
        self.connection: Any = None

    # -- OpenEnv's interface ----------------------------------------------------------------

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
              ) -> TokenObservation:
        raise RuntimeError("HarmonyEnvironment runs through reset_async (OpenEnv calls it)")

    def step(self, action: TokenAction, timeout_s: float | None = None, **kwargs: Any
             ) -> TokenObservation:
        raise RuntimeError("HarmonyEnvironment runs through step_async (OpenEnv calls it)")

    async def reset_async(self, seed: int | None = None, episode_id: str | None = None,
                          options: dict[str, Any] | None = None,
                          env_kwargs: dict[str, Any] | None = None, env_id: str | None = None,
                          full_task: bool = False, **extra: Any) -> TokenObservation:
        """Start an episode; ``env_kwargs`` (added to the server's pinned ones) make the env.

        ``full_task`` asks for the task's every field and unredacted verdicts: granted only
        by a server with a token (whose guard has already checked this client's).
        """
        self.busy = True
        try:
            return await self._reset(seed, episode_id, options, env_kwargs, env_id, full_task,
                                     extra)
        except _Reply as r:
            return r.obs
        finally:
            self.busy = False

    async def step_async(self, action: TokenAction, timeout_s: float | None = None,
                         **kwargs: Any) -> TokenObservation:
        """One model turn."""
        self.busy = True
        try:
            return await self._step(action)
        except _Reply as r:
            return r.obs
        finally:
            self.busy = False

    @property
    def state(self) -> EnvSessionState:
        """The session's env id, kwargs, task and last observation's length and hash."""
        task = getattr(self._env, "task", None)
        return EnvSessionState(
            episode_id=self._episode_id, step_count=self._steps,
            env_id=self.settings.served_id, env_kwargs=to_jsonable(self._kwargs or {}),
            task_id=None if task is None else task.id, active=self._active,
            obs_len=0 if self._last_obs is None else len(self._last_obs),
            obs_hash=None if self._hash is None else self._hash.hexdigest())

    def get_metadata(self) -> EnvironmentMetadata:
        """Name (the versioned env id), description and version of the served env."""
        s = agent_envs.spec(self.settings.env_id)
        return EnvironmentMetadata(
            name=s.id, version=agent_envs.__version__,
            description=f"{s.description} (agent-envs, harmony token ids; pinned kwargs "
                        f"{to_jsonable(dict(self.settings.env_kwargs))})",
            readme_content=__doc__, author="agent-envs")

    def close(self) -> None:
        """Close the env and its thread (OpenEnv calls this when the session ends)."""
        if self.closed_reason is None:
            self.closed_reason = "the session was closed"
        self._active = False
        env, pool, self._env, self._pool = self._env, self._pool, None, None
        _close_env(env, pool)

    # -- work ------------------------------------------------------------------------------

    async def _reset(self, seed: Any, episode_id: Any, options: Any, env_kwargs: Any,
                     env_id: Any, full_task: Any, extra: dict[str, Any]) -> TokenObservation:
        self._check_open()
        if extra:
            raise _Reply(_error(ERROR_BAD_REQUEST, "ValueError",
                                f"unknown reset field(s) {sorted(extra)}; a reset message's "
                                "data may hold seed, options, env_kwargs, env_id, episode_id, "
                                "full_task"))
        if not isinstance(full_task, bool):
            raise _Reply(_error(ERROR_BAD_REQUEST, "ValueError",
                                f"full_task must be true or false, got {full_task!r}"))
        if full_task and self.settings.token is None:
            raise _Reply(_error(
                ERROR_BAD_REQUEST, "ServerAuthError",
                "this server sends the full task (answer, solution, evidence) only to clients "
                "holding its token, and it was started without one: start it with `agent-envs "
                f"serve {self.settings.env_id} --token TOKEN` (or {TOKEN_ENV_VAR}=TOKEN) and "
                f"give the client the same token (token=TOKEN, or {TOKEN_ENV_VAR})"))
        if env_id is not None and _served(env_id) != self.settings.served_id:
            raise _Reply(_error(ERROR_BAD_REQUEST, "ValueError",
                                f"this server serves {self.settings.served_id!r}, not "
                                f"{env_id!r}; connect to a server started with "
                                f"`agent-envs serve {env_id}`"))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _Reply(_error(ERROR_BAD_REQUEST, "ValueError",
                                f"seed must be an integer or null, got {seed!r}"))
        kwargs = self._merge_kwargs(env_kwargs or {})
        if self._env is None or kwargs != self._kwargs:
            _close_env(self._env, self._pool)
            self._env, self._kwargs = None, None
            self._pool = _Worker()
            env = await self._run(self._make_env, kwargs, what="making the env",
                                  makes_env=True)
            self._env, self._kwargs = env, kwargs
        obs, info = await self._run(functools.partial(self._env.reset, seed=seed,
                                                      options=options), what="reset")
        self._last_obs = np.asarray(obs, dtype=np.int32)
        self._hash = RunningHash(self._last_obs)
        self._last_info = to_jsonable(info)
        self._active = True
        self._episode_id = episode_id
        self._steps = 0
        self._full = full_task
        task = getattr(self._env, "task", None)
        allowed = getattr(self._env, "allowed_token_ids", None)
        give = full_task and task is not None
        return TokenObservation(
            tokens=self._last_obs.tolist(), text=_decode(self._last_obs),
            info=self._last_info if full_task else public_info(self._last_info),
            allowed_token_ids=None if allowed is None else [int(t) for t in allowed()],
            task_meta=public_task(task),
            task=to_jsonable(task) if give else None,
            task_class=f"{type(task).__module__}:{type(task).__qualname__}" if give else None)

    async def _step(self, action: TokenAction) -> TokenObservation:
        self._check_open()
        if self._env is None or not self._active or self._last_obs is None:
            raise _Reply(_error(ERROR_BAD_REQUEST, "EnvStateError",
                                "step before reset, or after the episode ended; send a reset "
                                "message to start an episode"))
        act: Any = action.text if action.tokens is None else action.tokens
        obs, reward, terminated, truncated, info = await self._run(
            functools.partial(self._env.step, act), what="step")
        self._steps += 1
        new = np.asarray(obs, dtype=np.int32)
        prev, self._last_obs = self._last_obs, new
        self._last_info = to_jsonable(info)
        self._active = not (terminated or truncated)
        out = TokenObservation(reward=float(reward), done=bool(terminated or truncated),
                               terminated=bool(terminated), truncated=bool(truncated),
                               info=self._last_info if self._full
                               else public_info(self._last_info))
        if action.tokens is not None and not info.get("new_segment") and self._hash is not None:
            n = len(prev) + len(action.tokens)
            if (len(new) >= n and np.array_equal(new[: len(prev)], prev)
                    and np.array_equal(new[len(prev): n], np.asarray(action.tokens, np.int32))):
                h = self._hash.update(new[len(prev): n])
                out.appended = new[n:].tolist()
                out.prefix_len = n
                out.prefix_hash = h.hexdigest()
                h.update(new[n:])
                out.text = _decode(new[n:])
                return out
        self._hash = RunningHash(new)
        out.tokens = new.tolist()
        out.text = _decode(new)
        return out

    def _make_env(self, kwargs: dict[str, Any]) -> Any:
        if self.settings.env_factory is not None:
            return self.settings.env_factory(**kwargs)
        return agent_envs.make(self.settings.env_id, **kwargs)

    def _merge_kwargs(self, client: Any) -> dict[str, Any]:
        if not isinstance(client, dict):
            raise _Reply(_error(ERROR_BAD_REQUEST, "TypeError",
                                f"env_kwargs must be a JSON object, got {client!r}"))
        pinned = dict(self.settings.env_kwargs)
        clash = sorted(k for k in client if k in pinned and client[k] != pinned[k])
        if clash:
            raise _Reply(_error(
                ERROR_BAD_REQUEST, "ValueError",
                f"env kwarg(s) {clash} are pinned by the server to "
                f"{ {k: pinned[k] for k in clash} } and the client asked for "
                f"{ {k: client[k] for k in clash} }; drop them or start the server with "
                f"other --env-arg values"))
        return {**pinned, **client}

    def _check_open(self) -> None:
        if self.closed_reason is not None:
            raise _Reply(_error(ERROR_SESSION_CLOSED, "RemoteEnvError",
                                f"{self.closed_reason}; open a new session (agent_envs.remote "
                                "reconnects on reset)", done=True, truncated=True,
                                info=self._infra_info(self.closed_reason)))

    async def _run(self, fn: Callable[..., Any], *args: Any, what: str,
                   makes_env: bool = False) -> Any:
        """``fn(*args)`` in the session's thread, under the step timeout; errors in-band.

        A call that times out goes on in its thread (Python cannot stop it); the session's env
        is closed at once (that unblocks a step waiting on a sandbox) and what the call leaves
        behind is closed when it ends: the env it made (``makes_env``), or the session's env
        once more (a reset or step may have opened something after the first close).
        """
        assert self._pool is not None
        call = self._pool.submit(fn, *args)
        fut = asyncio.wrap_future(call)
        limit = self.settings.step_timeout_s
        try:
            return await asyncio.wait_for(fut, limit) if limit else await fut
        except asyncio.TimeoutError:
            why = (f"{what} ran longer than the server's step timeout ({limit:g} s); the "
                   "episode was ended and its env closed (the next reset makes a fresh one)")
            _close_when_done(call, None if makes_env else self._env, made=makes_env)
            self._abandon()
            raise _Reply(_error(ERROR_STEP_TIMEOUT, "TimeoutError", why, done=True,
                                truncated=True, info=self._infra_info(why))) from None
        except _CALLER_ERRORS as e:
            if what == "step" and not isinstance(e, (InvalidActionError, EnvStateError)):
                return self._env_crashed(what, e)
            raise _Reply(_error(ERROR_BAD_REQUEST, type(e).__name__, str(e))) from None
        except Exception as e:  # noqa: BLE001 - any other env failure is infra, in-band
            return self._env_crashed(what, e)
        except asyncio.CancelledError:  # the handler was cancelled (server shutdown)
            if makes_env:  # the session never gets this env; close it when it is made
                _close_when_done(call, None, made=True)
            raise

    def _env_crashed(self, what: str, e: BaseException) -> Any:
        why = f"the env raised during {what}: {type(e).__name__}: {e}"
        _log.warning("session env failed: %s", why)
        self._abandon()
        raise _Reply(_error(ERROR_INFRA, type(e).__name__, why, done=True, truncated=True,
                            info=self._infra_info(why)))

    def _abandon(self) -> None:
        """Drop the env and its (maybe stuck) thread; close the env off the event loop."""
        self._active = False
        self._hash = None
        env, pool, self._env, self._kwargs, self._pool = self._env, self._pool, None, None, None
        threading.Thread(target=_close_env, args=(env, pool), daemon=True,
                         name="agent-env-close").start()

    def _infra_info(self, why: str) -> dict[str, Any]:
        base = dict(self._last_info)
        base.update(new_segment=False, env_token_count=0, tool_outcome=None, model_error=None,
                    infra_error=why, reward_components={}, verdict=None,
                    truncated_reason="infra")
        return base


def _decode(tokens: np.ndarray) -> str:
    """The text of ``tokens``, special tokens written out (what a chat-level harness shows)."""
    return get_codec().decode(tokens) if len(tokens) else ""


def _served(env_id: str) -> str:
    try:
        return agent_envs.spec(env_id).id
    except AgentEnvsError:
        return env_id


def _error(code: str, type_name: str, message: str, **fields: Any) -> TokenObservation:
    return TokenObservation(error={"code": code, "type": type_name, "message": message},
                            **fields)


def _close_env(env: Any, pool: _Worker | None) -> None:
    if env is not None:
        try:
            env.close()
        except Exception as e:  # noqa: BLE001 - closing is best effort
            _log.debug("closing a session env failed: %s", e)
    if pool is not None:
        pool.shutdown()


class _Worker:
    """A session's thread: runs its env calls in order (``submit`` returns a ``Future``).

    A daemon thread, unlike a ``ThreadPoolExecutor``'s: a call that hangs for good (past the
    step timeout, ignoring close) keeps its thread, but does not keep the server process from
    exiting (``concurrent.futures`` joins its threads at exit).
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
                                       | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True, name="agent-env").start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` after the calls before it."""
        fut: Future[Any] = Future()
        self._calls.put((fut, fn, args))
        return fut

    def shutdown(self) -> None:
        """End the thread once the calls already submitted have run."""
        self._calls.put(None)

    def _loop(self) -> None:
        while (item := self._calls.get()) is not None:
            fut, fn, args = item
            del item
            if fut.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
                else:
                    fut.set_result(result)
                    del result
            del fut, fn, args


def _close_when_done(call: Future[Any], env: Any, *, made: bool) -> None:
    """When an abandoned ``call`` ends, close ``env`` in a thread of its own, or with
    ``made``, the env the call returned (a make that timed out)."""

    def done(f: Future[Any]) -> None:
        target = env
        if made:
            if f.cancelled() or f.exception() is not None:
                return
            target = f.result()
        threading.Thread(target=_close_env, args=(target, None), daemon=True,
                         name="agent-env-close").start()

    call.add_done_callback(done)
