"""One server session: a gymnasium env from ``agent_envs`` behind OpenEnv's ``Environment``.

:class:`HarmonyEnvironment` speaks token ids (:mod:`agent_envs.server.models`), sending
observations as deltas with a prefix hash, their decoded text, and only what a model may see
(:mod:`agent_envs.server.public`).

No thread per session. An env whose async twins (``areset``/``astep``/``aclose``, and a
harmony env's ``acall_tool``/``aend_episode``) are its real implementation runs as coroutines
on the server's event loop, as the rollout collector drives envs: python-tool's sandbox calls
are awaited on their sockets. Making an env, and every call of an env that overrides a sync
method below its async twin (so the twin would skip the override), run on the server's bounded
pool of threads (:class:`~agent_envs.server._threads.ThreadSlots`, ``ServerSettings.workers``).

A reset or step past the step timeout returns an in-band ``step_timeout`` error (the episode
ends, truncated, ``infra_error`` set) and the session's env is closed and replaced, so the
session stays usable; an env whose making timed out is closed once made, and an env whose
reset or step timed out is closed again once that call returns (a coroutine is cancelled: a
sandbox call in flight kills its sandbox session).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import Any, Literal

import numpy as np

import agent_envs
from agent_envs.errors import AgentEnvsError, EnvStateError, InvalidActionError, UnknownTaskError
from agent_envs.harmony import get_codec
from agent_envs.server._openenv import Environment, EnvironmentMetadata
from agent_envs.server._threads import ThreadSlots
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

__all__ = ["HarmonyEnvironment", "ServerSettings", "runs_async"]

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
        workers: Threads for blocking work, shared by every session: making envs, and the
            calls of envs that run synchronously (see ``env_calls``).
        env_calls: ``"auto"``: an env whose async twins are its real implementation runs on
            the event loop (no thread), any other env's calls on the ``workers`` threads;
            ``"threads"``: every env's calls on the threads (for an env whose async methods
            block, e.g. CPU-heavy tools).
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_sessions: int = 64
    idle_timeout_s: float | None = 600.0
    step_timeout_s: float | None = 600.0
    env_factory: Callable[..., Any] | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    workers: int = 32
    env_calls: Literal["auto", "threads"] = "auto"

    def __post_init__(self) -> None:
        if self.token is not None and (not isinstance(self.token, str) or not self.token
                                       or self.token != self.token.strip()
                                       or not self.token.isprintable()):
            raise ValueError("the server token must be a non-empty string of printable "
                             "characters without surrounding spaces (it travels in an HTTP "
                             "header); e.g. --token \"$(openssl rand -hex 16)\"")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) \
                or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1 (threads for making envs and "
                             f"for envs that run synchronously), got {self.workers!r}")
        if self.env_calls not in ("auto", "threads"):
            raise ValueError(f"env_calls must be 'auto' (async envs on the event loop) or "
                             f"'threads' (every env call on the worker threads), got "
                             f"{self.env_calls!r}")
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

    The env is made at the first reset (with the client's extra kwargs), on the server's
    worker threads; its calls then run as coroutines on the event loop or on those threads
    (see the module docstring), and a call past ``ServerSettings.step_timeout_s`` is
    abandoned.

    Args:
        settings: The server's settings.
        threads: The server's shared worker threads (default: a process-wide pool of
            ``settings.workers`` threads).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session has its own env

    def __init__(self, settings: ServerSettings, threads: ThreadSlots | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._threads = threads if threads is not None else default_threads(settings.workers)
        self._env: Any = None
        self._kwargs: dict[str, Any] | None = None
        self._async = False  # the env runs on the event loop (else on the worker threads)
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
        """Close the env, blocking (from a thread; the server itself awaits :meth:`aclose`)."""
        if self.closed_reason is None:
            self.closed_reason = "the session was closed"
        self._active = False
        env, self._env = self._env, None
        _close_env(env)

    async def aclose(self) -> None:
        """Close the env (the server awaits this when the session ends). Never raises."""
        if self.closed_reason is None:
            self.closed_reason = "the session was closed"
        self._active = False
        env, self._env = self._env, None
        await self._aclose_env(env, self._async)

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
            old, self._env, self._kwargs = self._env, None, None
            await self._aclose_env(old, self._async)
            env = await self._run("making the env", functools.partial(self._make_env, kwargs),
                                  makes_env=True)
            self._env, self._kwargs = env, kwargs
            self._async = self.settings.env_calls == "auto" and runs_async(env)
        env = self._env
        obs, info = await self._run(
            "reset", functools.partial(env.reset, seed=seed, options=options),
            lambda: env.areset(seed=seed, options=options))
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
        env = self._env
        obs, reward, terminated, truncated, info = await self._run(
            "step", functools.partial(env.step, act), lambda: env.astep(act))
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

    async def _run(self, what: str, call: Callable[[], Any],
                   coro: Callable[[], Awaitable[Any]] | None = None, *,
                   makes_env: bool = False) -> Any:
        """``coro()`` on the event loop if the env runs there, else ``call()`` on a worker
        thread, under the step timeout; errors in-band.

        A call that times out is abandoned: a coroutine is cancelled (a sandbox call in flight
        kills its sandbox session), a thread goes on (Python cannot stop it) and gives its
        worker slot back. The session's env is closed at once (that unblocks a step waiting on
        a sandbox) and what the call leaves behind is closed when it ends: the env it made
        (``makes_env``), or the session's env once more (a reset or step may have opened
        something after the first close).
        """
        future: Future[Any] | None = None
        if coro is not None and self._async and not makes_env:
            task: asyncio.Future[Any] = asyncio.ensure_future(coro())
        else:
            future = self._threads.submit(call)
            task = asyncio.wrap_future(future)
        limit = self.settings.step_timeout_s
        try:
            done, _ = await asyncio.wait((task,), timeout=limit)
        except asyncio.CancelledError:  # the handler was cancelled (server shutdown)
            if makes_env:  # the session never gets this env; close it when it is made
                _close_when_done(future or task, None, made=True, is_async=False)
            else:
                task.cancel()
            raise
        if not done:
            why = (f"{what} ran longer than the server's step timeout ({limit:g} s); the "
                   "episode was ended and its env closed (the next reset makes a fresh one)")
            if future is not None:
                self._threads.abandon(future)
            else:
                task.cancel()
            _close_when_done(future or task, None if makes_env else self._env, made=makes_env,
                             is_async=future is None)
            self._abandon()
            raise _Reply(_error(ERROR_STEP_TIMEOUT, "TimeoutError", why, done=True,
                                truncated=True, info=self._infra_info(why)))
        try:
            return task.result()
        except _CALLER_ERRORS as e:
            if what == "step" and not isinstance(e, (InvalidActionError, EnvStateError)):
                return self._env_crashed(what, e)
            raise _Reply(_error(ERROR_BAD_REQUEST, type(e).__name__, str(e))) from None
        except Exception as e:  # noqa: BLE001 - any other env failure is infra, in-band
            return self._env_crashed(what, e)

    async def _aclose_env(self, env: Any, is_async: bool) -> None:
        """Close ``env``: awaited on the loop if it runs there, else on a worker thread."""
        if env is None:
            return
        try:
            if is_async:
                await env.aclose()
            else:
                await asyncio.wrap_future(self._threads.submit(env.close))
        except Exception as e:  # noqa: BLE001 - closing is best effort
            _log.debug("closing a session env failed: %s", e)

    def _env_crashed(self, what: str, e: BaseException) -> Any:
        why = f"the env raised during {what}: {type(e).__name__}: {e}"
        _log.warning("session env failed: %s", why)
        self._abandon()
        raise _Reply(_error(ERROR_INFRA, type(e).__name__, why, done=True, truncated=True,
                            info=self._infra_info(why)))

    def _abandon(self) -> None:
        """Drop the env (its call may be stuck) and close it without waiting for that."""
        self._active = False
        self._hash = None
        env, self._env, self._kwargs = self._env, None, None
        _close_soon(env, is_async=self._async)

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


def runs_async(env: Any) -> bool:
    """Whether ``env``'s async twins are its real implementation, so the server can run it on
    the event loop: it has ``areset``/``astep``/``aclose``, and none of its sync methods is
    overridden below its async twin (a subclass that overrides ``step`` alone would see its
    override skipped by the inherited ``astep``). A harmony env's tool and episode hooks
    (``call_tool``/``acall_tool``, ``end_episode``/``aend_episode``) count too.
    """
    cls = type(env)
    for sync, twin in _TWINS:
        s, a = _defined_in(cls, sync), _defined_in(cls, twin)
        if a is None:
            if sync in _REQUIRED:
                return False
            continue
        if s is not None and not issubclass(a, s):
            return False
    return True


_TWINS = (("reset", "areset"), ("step", "astep"), ("close", "aclose"),
          ("call_tool", "acall_tool"), ("end_episode", "aend_episode"))
_REQUIRED = ("reset", "step", "close")


def _defined_in(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


_DEFAULT_THREADS: dict[int, ThreadSlots] = {}
_DEFAULT_LOCK = threading.Lock()


def default_threads(size: int) -> ThreadSlots:
    """The process-wide worker pool of ``size`` threads (for sessions made without one)."""
    with _DEFAULT_LOCK:
        pool = _DEFAULT_THREADS.get(size)
        if pool is None:
            pool = _DEFAULT_THREADS[size] = ThreadSlots(size, name="agent-env")
        return pool


def _close_env(env: Any) -> None:
    if env is not None:
        try:
            env.close()
        except Exception as e:  # noqa: BLE001 - closing is best effort
            _log.debug("closing a session env failed: %s", e)


_CLOSING: set[asyncio.Future[Any]] = set()  # close tasks in flight (kept from the GC)


def _close_soon(env: Any, *, is_async: bool) -> None:
    """Close ``env`` without waiting: a task on the running loop for an env that runs there,
    else a daemon thread of its own (not a worker: they may all be stuck in calls that only
    this close unblocks)."""
    if env is None:
        return
    if is_async:
        async def aclose() -> None:
            try:
                await env.aclose()
            except Exception as e:  # noqa: BLE001 - closing is best effort
                _log.debug("closing a session env failed: %s", e)

        task = asyncio.get_running_loop().create_task(aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
        return
    threading.Thread(target=_close_env, args=(env,), daemon=True,
                     name="agent-env-close").start()


def _close_when_done(call: asyncio.Future[Any] | Future[Any], env: Any, *, made: bool,
                     is_async: bool) -> None:
    """When an abandoned ``call`` ends, close ``env``, or with ``made``, the env the call
    returned (a make that timed out). ``is_async``: ``call`` is a task on the running loop
    and ``env`` runs there; else the close runs in a thread."""

    def done(f: Any) -> None:
        target = env
        if made:
            if f.cancelled() or f.exception() is not None:
                return
            target = f.result()
        elif not f.cancelled():
            f.exception()  # retrieved: an abandoned call's error is not worth a warning
        _close_soon(target, is_async=is_async)

    call.add_done_callback(done)
