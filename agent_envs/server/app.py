"""The environment server: any registered env behind OpenEnv's WebSocket protocol.

Built on ``openenv-core``'s ``HTTPEnvServer`` (``/ws``, ``/health``, ``/metadata``,
``/schema``, its message models, its session cap and in-band errors). What this module adds:

- :class:`HarmonyEnvironment`, an OpenEnv ``Environment`` that runs one of our gymnasium envs
  in its own thread and speaks token ids (:mod:`agent_envs.server.models`), sending
  observations as deltas with a prefix hash;
- a per-step timeout: a reset or step that runs longer returns an in-band ``step_timeout``
  error (the episode ends, truncated, ``infra_error`` set) and the session's env is closed
  and replaced, so the session stays usable; an env whose making timed out is closed once
  made, and an env whose reset or step timed out is closed again once that call returns;
- idle reaping with a sub-second poll (OpenEnv polls every 5 s at least) that never reaps a
  session in the middle of a step: the env is closed, the client gets an in-band
  ``SESSION_CLOSED`` error and the server closes the socket;
- backpressure: at ``max_sessions`` a new WebSocket is refused in-band (OpenEnv's
  ``CAPACITY_REACHED`` error, then the socket closes); ``agent_envs.remote`` waits and retries
  until its ``busy_timeout_s``;
- secrets stay here: observations carry tokens, their text and the task's public metadata,
  never the answer, solution, evidence or a verdict's reason (:mod:`agent_envs.server.public`),
  except to a client holding the server's token that asks for the full task;
- a token (:mod:`agent_envs.server.auth`): without it every request but ``/health`` is refused
  before any session or env is made; an exception a bad request causes is one log line;
- start-up checks (:func:`run_server`): the port, and one env made, reset and closed with the
  pinned kwargs, so a bad ``--env-arg`` fails before the server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

import numpy as np
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import ConcurrencyConfig, EnvironmentMetadata

import agent_envs
from agent_envs.errors import AgentEnvsError, EnvStateError, InvalidActionError, UnknownTaskError
from agent_envs.harmony import get_codec
from agent_envs.server.auth import AuthGuard, is_loopback
from agent_envs.server.models import EnvSessionState, ResetData, TokenAction, TokenObservation
from agent_envs.server.protocol import (
    ERROR_BAD_REQUEST,
    ERROR_INFRA,
    ERROR_SESSION_CLOSED,
    ERROR_STEP_TIMEOUT,
    TOKEN_ENV_VAR,
    RunningHash,
    ServerStartError,
    to_jsonable,
)
from agent_envs.server.public import public_info, public_task

__all__ = ["HarmonyEnvironment", "ServerSettings", "create_app", "preflight", "run_server"]

_log = logging.getLogger(__name__)

#: Exceptions that are the caller's mistake (sent as bad_request, raised again by the client).
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
        self.connection: _Connection | None = None

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


class _Connection:
    """One ``/ws`` connection, as the idle reaper sees it: it can be told to close."""

    def __init__(self) -> None:
        self.closed_reason: str | None = None
        self.wakeup = asyncio.Event()

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self.wakeup.set()


_CONNECTION: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "agent_envs_ws_connection", default=None)


class _ClosableWebSockets:
    """ASGI middleware: a ``/ws`` connection whose session was reaped is closed by the server.

    OpenEnv's handler waits in ``receive()`` and has no way to be told its session is gone.
    This wraps ``receive`` so that, once the reaper closes the connection, the client first
    gets an in-band ``error`` (``code: "SESSION_CLOSED"``, the reason) and the handler then
    sees a disconnect, ends the session and closes the socket as it always does.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or scope.get("path") != "/ws":
            await self.app(scope, receive, send)
            return
        conn = _Connection()
        token = _CONNECTION.set(conn)
        pending: asyncio.Future | None = None
        waiter = asyncio.ensure_future(conn.wakeup.wait())

        async def closable_receive() -> Any:
            nonlocal pending
            if conn.closed_reason is None:
                if pending is None:
                    pending = asyncio.ensure_future(receive())
                await asyncio.wait((pending, waiter), return_when=asyncio.FIRST_COMPLETED)
                if pending.done():
                    message, pending = pending.result(), None
                    return message
            if pending is not None:
                pending.cancel()
                pending = None
            notice = {"type": "error", "data": {"code": "SESSION_CLOSED",
                                                "message": conn.closed_reason}}
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "websocket.send", "text": json.dumps(notice)})
            return {"type": "websocket.disconnect", "code": 1001}

        try:
            await self.app(scope, closable_receive, send)
        finally:
            waiter.cancel()
            if pending is not None:
                pending.cancel()
            _CONNECTION.reset(token)


class AgentEnvServer(HTTPEnvServer):
    """OpenEnv's ``HTTPEnvServer`` with a finer idle reaper that skips busy sessions and
    closes the reaped session's socket (after an in-band notice)."""

    async def _create_session(self) -> tuple[str, Any]:
        session_id, env = await super()._create_session()
        env.connection = _CONNECTION.get()  # set by _ClosableWebSockets for /ws
        return session_id, env

    async def _reap_idle_sessions(self) -> None:
        timeout = self._session_idle_timeout_s
        if timeout is None:
            return
        interval = min(max(timeout / 4, 0.05), 5.0)
        while True:
            try:
                await asyncio.sleep(interval)
                now = time.time()
                stale = [sid for sid, info in list(self._session_info.items())
                         if now - info.last_activity_at > timeout]
                for sid in stale:
                    env = self._sessions.get(sid)
                    if env is None or getattr(env, "busy", False):
                        continue  # still starting, or in a step (the step timeout bounds it)
                    reason = f"the session was idle for more than {timeout:g} s"
                    env.closed_reason = reason
                    await self._destroy_session(sid)
                    if getattr(env, "connection", None) is not None:
                        env.connection.close(reason)
            except asyncio.CancelledError:
                break
            except Exception as e:  # noqa: BLE001 - the reaper must keep running
                _log.warning("idle-session reaper failed (will retry): %s", e)


def create_app(settings: ServerSettings) -> Any:
    """A FastAPI app serving ``settings.env_id`` (``/ws``, ``/health``, ``/metadata``, ...)."""
    from fastapi import FastAPI

    settings.served_id  # noqa: B018 - fail now on an unknown env id, not per session
    app = FastAPI(title=f"agent-envs: {settings.served_id}",
                  description="An agent-envs environment over OpenEnv's WebSocket protocol "
                              "with harmony token ids (see /schema).")
    server = AgentEnvServer(
        functools.partial(HarmonyEnvironment, settings), TokenAction, TokenObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=settings.max_sessions,
                                             session_timeout=settings.idle_timeout_s))
    server.register_routes(app)

    @app.get("/schema", include_in_schema=False)
    async def schema() -> dict[str, Any]:  # OpenEnv's, with our state and reset models
        return {"action": TokenAction.model_json_schema(),
                "observation": TokenObservation.model_json_schema(),
                "state": EnvSessionState.model_json_schema(),
                "reset": ResetData.model_json_schema()}

    # Ours is registered after OpenEnv's /schema: move it first so it answers.
    routes = app.router.routes
    routes.insert(0, routes.pop(len(routes) - 1))
    app.add_middleware(_ClosableWebSockets)
    app.add_middleware(AuthGuard, token=settings.token)  # added last: runs first
    app.state.env_server = server
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port; read it from ``getsockname()``).

    Raises:
        ServerStartError: the port is out of range, in use, or not ours to bind, or the
            host is no address of this machine (the message says which, and the fix).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServerStartError(f"--port must be a TCP port from 0 to 65535 (0: any free "
                               f"port), got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ServerStartError(_bind_error(host, port, e)) from e
    sock.set_inheritable(True)
    return sock


def _bind_error(host: str, port: int, e: OSError) -> str:
    import errno

    where = f"{host}:{port}"
    if e.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: the port is in use (another agent-envs serve, or "
                f"another program); pick another --port, or --port 0 for any free one")
    if e.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need root); "
                f"pick a --port from 1024 to 65535, or 0 for any free one")
    if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
        return (f"cannot listen on {where}: {host!r} is not an address of this machine "
                f"({e.strerror or e}); use --host 127.0.0.1 (this machine only) or 0.0.0.0 "
                "(every interface)")
    return f"cannot listen on {where}: {e.strerror or e}"


def preflight(settings: ServerSettings, *, timeout_s: float | None = None) -> None:
    """Make one env with the pinned kwargs, reset it and close it: a bad ``--env-arg`` (an
    unknown name, a bad value, a sandbox backend that does not exist or cannot start a
    session) fails here, at start-up, instead of at every client's reset.

    Raises:
        ServerStartError: the env could not be made, reset or its sandbox started; the
            message names the env arguments (the culprit alone when there are several).
    """
    limit = timeout_s if timeout_s is not None else settings.step_timeout_s
    error = _try_env(settings, dict(settings.env_kwargs), limit, deep=True)
    if error is None:
        return
    kwargs = dict(settings.env_kwargs)
    shown = _env_args_text(kwargs)
    culprits = []
    if len(kwargs) > 1:  # name the argument(s) that fail on their own
        culprits = [k for k in kwargs
                    if _try_env(settings, {k: kwargs[k]}, limit, deep=False) is not None]
    blame = (f"; the culprit: {_env_args_text({k: kwargs[k] for k in culprits})}"
             if culprits else "")
    with_args = f" with {shown}" if kwargs else ""
    raise ServerStartError(f"cannot serve {settings.served_id}{with_args}: {error}{blame}. Fix "
                           f"the --env-arg value(s) (`agent-envs list` shows the envs; "
                           f"make('{settings.env_id}', ...) takes the same arguments)")


def _env_args_text(kwargs: Mapping[str, Any]) -> str:
    return " ".join(f"--env-arg {k}={json.dumps(v)}" for k, v in kwargs.items())


def _try_env(settings: ServerSettings, kwargs: dict[str, Any], limit: float | None,
             *, deep: bool) -> str | None:
    """None if the env can be made (and, ``deep``, reset and its sandbox session opened),
    else what went wrong, as one line."""
    def attempt() -> None:
        env = (settings.env_factory(**kwargs) if settings.env_factory is not None
               else agent_envs.make(settings.env_id, **kwargs))
        try:
            if deep:
                env.reset(seed=0)
                _open_one_session(env)
        finally:
            with contextlib.suppress(Exception):
                env.close()

    worker = _Worker()
    try:
        call = worker.submit(attempt)
        call.result(timeout=limit)
    except FutureTimeoutError:
        return (f"making and resetting one env took longer than the step timeout "
                f"({limit:g} s)")
    except Exception as e:  # noqa: BLE001 - reported with the env arguments
        return f"{type(e).__name__}: {e}"
    finally:
        worker.shutdown()
    return None


def _open_one_session(env: Any) -> None:
    """Start a sandbox session if the env runs code in one (python-tool opens them lazily, at
    the first call: a backend that does not exist, or limits too small to start a process,
    would otherwise fail every episode's first tool call)."""
    sandbox = getattr(type(env), "sandbox", None)
    if not isinstance(sandbox, property):
        return
    session = env.sandbox.open()
    session.close()


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def make_uvicorn_server(settings: ServerSettings, *, log_level: str = "warning") -> Any:
    """An ``uvicorn.Server`` for the app (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(create_app(settings), ws="websockets-sansio", log_level=log_level,
                            ws_max_size=256 * 1024 * 1024, ws_per_message_deflate=False,
                            backlog=2048, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run_server(settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000,
               log_level: str = "warning", ready: Callable[[str], None] | None = None,
               check_env: bool = True, warn: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once the socket listens.

    Before listening: the port is bound (a port in use fails here), and with ``check_env``
    one env is made, reset and closed (:func:`preflight`). ``warn`` gets a warning when the
    server would be reachable from other machines without a token (default: stderr).

    Raises:
        ServerStartError: the port cannot be bound, or the env arguments are bad.
    """
    server = make_uvicorn_server(settings, log_level=log_level)  # bad settings fail here
    sock = bind_socket(host, port)
    try:
        if check_env:
            preflight(settings)
        if settings.token is None and not is_loopback(host):
            (warn or _stderr)(
                f"warning: serving on {host} without a token: anyone who can reach this port "
                "runs code in its sandboxes (and spends any live-browsing keys). Start it with "
                f"--token TOKEN (or {TOKEN_ENV_VAR}) and give clients the same token.")
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{bound}")
        server.run(sockets=[sock])
    finally:
        sock.close()
