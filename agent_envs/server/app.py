"""The environment server: any registered env behind OpenEnv's WebSocket protocol.

Built on ``openenv-core``'s ``HTTPEnvServer`` (``/ws``, ``/health``, ``/metadata``,
``/schema``, its message models, its session cap and in-band errors). What this package adds:

- sessions (:class:`~agent_envs.server.session.HarmonyEnvironment`) that run one of our
  gymnasium envs each, speak token ids, and end a reset or step past the step timeout in-band;
- secrets stay here: observations carry tokens, their text and the task's public metadata,
  never the answer, solution, evidence or a verdict's reason (:mod:`agent_envs.server.public`),
  except to a client holding the server's token that asks for the full task;
- a token (:mod:`agent_envs.server.auth`): without it every request but ``/health`` is refused
  before any session or env is made; an exception a bad request causes is one log line;
- idle reaping with a sub-second poll (OpenEnv polls every 5 s at least) that never reaps a
  session in the middle of a step: the env is closed, the client gets an in-band
  ``SESSION_CLOSED`` error and the server closes the socket;
- backpressure: at ``max_sessions`` a new WebSocket is refused in-band (OpenEnv's
  ``CAPACITY_REACHED`` error, then the socket closes); ``agent_envs.remote`` waits and retries
  until its ``busy_timeout_s``;
- start-up checks (:func:`run_server`): the port, and one env made, reset and closed with the
  pinned kwargs (:func:`preflight`), so a bad ``--env-arg`` fails before the server listens;
- no thread per session: sessions' envs run as coroutines on the event loop, or on a bounded
  pool of worker threads shared by all (:mod:`agent_envs.server.session`), and the open-file
  limit is raised to what ``max_sessions`` needs (:func:`raise_fd_limit`), so one process
  holds thousands of sessions;
- ``GET /load``: open sessions and the cap, which clients spreading sessions over several
  servers route by (:mod:`agent_envs.server.fleet`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

import agent_envs
from agent_envs.server._openenv import ConcurrencyConfig, HTTPEnvServer
from agent_envs.server._threads import ThreadSlots
from agent_envs.server.auth import AuthGuard, is_loopback
from agent_envs.server.models import EnvSessionState, ResetData, TokenAction, TokenObservation
from agent_envs.server.protocol import TOKEN_ENV_VAR, ServerStartError
from agent_envs.server.session import HarmonyEnvironment, ServerSettings

__all__ = ["HarmonyEnvironment", "ServerSettings", "bind_socket", "create_app",
           "exposure_warning", "make_uvicorn_server", "preflight", "run_server"]

_log = logging.getLogger(__name__)

#: Connections the kernel queues while the server accepts (capped by net.core.somaxconn): a
#: burst of thousands of clients connecting at once waits here instead of timing out.
LISTEN_BACKLOG = 4096
#: Open files one session may hold: its WebSocket, and a sandbox session's socket, CPU-weight
#: file and pidfd (python-tool); the rest of the process gets ``FD_RESERVE``.
FDS_PER_SESSION = 4
FD_RESERVE = 1024


def raise_fd_limit(max_sessions: int) -> tuple[int, int | None]:
    """Raise this process's soft RLIMIT_NOFILE towards what ``max_sessions`` sessions need
    (at most the hard limit, which only root may raise). Returns (soft limit now, the
    number of files needed when even the hard limit is lower, else None)."""
    import resource

    need = max_sessions * FDS_PER_SESSION + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    short = soft != resource.RLIM_INFINITY and soft < need
    return soft, need if short else None

class _Connection:
    """One ``/ws`` connection, as the idle reaper sees it: it can be told to close."""

    __slots__ = ("closed_reason", "wakeup")

    def __init__(self) -> None:
        self.closed_reason: str | None = None
        self.wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        if not self.wakeup.done():
            self.wakeup.set_result(None)


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
        waiter = conn.wakeup  # a future, not a task: nothing runs per idle connection

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
    """OpenEnv's ``HTTPEnvServer`` without a thread per session, with a finer idle reaper that
    skips busy sessions and closes the reaped session's socket (after an in-band notice).

    OpenEnv gives every session a one-thread executor of its own, to make the env in and
    close it in. Ours are cheap to construct (the env itself is made at the first reset, on
    the server's shared worker threads) and close as coroutines, so sessions get none.
    """

    async def _create_session(self) -> tuple[str, Any]:
        from openenv.core.env_server.exceptions import SessionCapacityError
        from openenv.core.env_server.types import SessionInfo

        async with self._session_lock:
            if len(self._sessions) >= self._max_concurrent_envs:
                raise SessionCapacityError(active_sessions=len(self._sessions),
                                           max_sessions=self._max_concurrent_envs)
            session_id = str(uuid.uuid4())
            env = self._env_factory()  # a HarmonyEnvironment: no env, no thread yet
            env.connection = _CONNECTION.get()  # set by _ClosableWebSockets for /ws
            now = time.time()
            self._sessions[session_id] = env
            self._session_info[session_id] = SessionInfo(
                session_id=session_id, created_at=now, last_activity_at=now, step_count=0,
                environment_type=type(env).__name__)
        return session_id, env

    async def _cleanup_session_resources(self, env: Any, executor: Any = None,
                                         stack: Any = None) -> None:
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()
        if env is not None:
            await env.aclose()  # never raises

    def load(self) -> dict[str, Any]:
        """Sessions open and the cap (``GET /load``; clients route new sessions by it)."""
        return {"sessions": len(self._sessions), "max_sessions": self._max_concurrent_envs,
                "busy": sum(1 for e in list(self._sessions.values())
                            if getattr(e, "busy", False))}

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
    threads = ThreadSlots(settings.workers, name="agent-env")
    server = AgentEnvServer(
        functools.partial(HarmonyEnvironment, settings, threads), TokenAction,
        TokenObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=settings.max_sessions,
                                             session_timeout=settings.idle_timeout_s))
    server.register_routes(app)

    @app.get("/load", include_in_schema=False)
    async def load() -> dict[str, Any]:
        """Open sessions, the cap, and how many are in a reset or step now."""
        return {"env_id": settings.served_id, **server.load()}

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
        sock.listen(LISTEN_BACKLOG)
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
                    if _try_env(settings, {k: kwargs[k]}, limit, deep=True) is not None]
    blame = (f"; the culprit: {_env_args_text({k: kwargs[k] for k in culprits})}"
             if culprits else "")
    with_args = f" with {shown}" if kwargs else ""
    error = error.rstrip(". ")
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

    call: Future[None] = Future()

    def run() -> None:  # a daemon thread: an attempt that hangs does not hold up the exit
        if call.set_running_or_notify_cancel():
            try:
                attempt()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                call.set_exception(e)
            else:
                call.set_result(None)

    threading.Thread(target=run, daemon=True, name="agent-env-preflight").start()
    try:
        call.result(timeout=limit)
    except FutureTimeoutError:
        return (f"making and resetting one env took longer than the step timeout "
                f"({limit:g} s)")
    except Exception as e:  # noqa: BLE001 - reported with the env arguments
        return f"{type(e).__name__}: {e}"
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


def exposure_warning(settings: ServerSettings, host: str) -> str | None:
    """The warning for a server other machines can reach with no token, else None."""
    if settings.token is not None or is_loopback(host):
        return None
    return (f"warning: serving on {host} without a token: anyone who can reach this port runs "
            "code in its sandboxes (and spends any live-browsing keys). Start it with --token "
            f"TOKEN (or {TOKEN_ENV_VAR}) and give clients the same token.")


def _log_like_uvicorn(level: str) -> None:
    """Our server's log lines (refusals, bad requests, env failures) on stderr, one line each,
    in uvicorn's format and at its level."""
    logger = logging.getLogger("agent_envs.server")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def make_uvicorn_server(settings: ServerSettings, *, log_level: str = "warning") -> Any:
    """An ``uvicorn.Server`` for the app (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(create_app(settings), ws="websockets-sansio", log_level=log_level,
                            ws_max_size=256 * 1024 * 1024, ws_per_message_deflate=False,
                            backlog=LISTEN_BACKLOG, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run_server(settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000,
               log_level: str = "warning", ready: Callable[[str], None] | None = None,
               check_env: bool = True, warn: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once the socket listens.

    Before listening: the open-file limit is raised for ``max_sessions`` (``warn`` is told
    when the hard limit is too low), the port is bound (a port in use fails here), and with
    ``check_env`` one env is made, reset and closed (:func:`preflight`). ``warn`` gets a
    warning when the server would be reachable from other machines without a token (default:
    stderr).

    Raises:
        ServerStartError: the port cannot be bound, or the env arguments are bad.
    """
    _log_like_uvicorn(log_level)
    server = make_uvicorn_server(settings, log_level=log_level)  # bad settings fail here
    soft, need = raise_fd_limit(settings.max_sessions)
    if need is not None:
        (warn or _stderr)(
            f"warning: --max-sessions {settings.max_sessions} needs about {need} open files "
            f"and this process may open {soft} (the hard RLIMIT_NOFILE); sessions past that "
            f"fail to open their sockets. Raise it (ulimit -Hn as root, or LimitNOFILE= in a "
            f"systemd unit) or lower --max-sessions to {max(1, (soft - FD_RESERVE) // FDS_PER_SESSION)}.")
    sock = bind_socket(host, port)
    try:
        if check_env:
            preflight(settings)
        warning = exposure_warning(settings, host)
        if warning is not None:
            (warn or _stderr)(warning)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{bound}")
        server.run(sockets=[sock])
    finally:
        sock.close()
