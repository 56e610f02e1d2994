"""``agent_envs.remote``: a gymnasium env whose episodes run on an ``agent-envs serve`` server.

    >>> env = agent_envs.remote("http://gpu-box:8000", "python-tool", difficulty=2)
    >>> obs, info = env.reset(seed=7)          # same obs/info as agent_envs.make(...) gives
    >>> obs, reward, terminated, truncated, info = env.step(completion_ids)

The env keeps the contract of ``agent_envs.core.HarmonyEnv`` (int32 token observations that
extend ``obs + action``, the same ``info`` keys as JSON, async twins ``areset``/``astep``/
``aclose``), so the rollout collector and the trainer use it like a local env.

The server keeps each task's secrets (answer, solution, evidence): ``env.task_meta`` holds
the task's public metadata, and ``env.task`` is None unless the env was made with
``full_task=True`` by a client holding the server's token (``token=...`` or the
``AGENT_ENVS_SERVER_TOKEN`` environment variable), as scripted oracles need.

Faults are flagged, never hung on and never raised out of ``step``: a lost connection (the
server died), a step past the server's timeout, an env crash on the server, or an observation
delta whose prefix hash does not match what this client holds all end the episode with
``truncated=True`` and ``info["infra_error"]`` set (``truncated_reason="infra"``). ``reset``
raises :class:`~agent_envs.server.protocol.RemoteEnvError` when no server answers (the
collector records that episode as infra-flagged). At the server's session cap, ``reset``
waits and retries for up to ``busy_timeout_s``, then raises ``ServerBusyError``.

Several servers: give a list of URLs (or one string of URLs separated by commas) and each
session goes to the least-loaded live server, a server that dies fails only the episodes it was
running, and new sessions go to the others (:mod:`agent_envs.server.fleet`).

Connections live on one background event loop per process, so the sync and async methods
can be mixed and called from any thread or event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agent_envs import errors as _errors
from agent_envs.core import coerce_token_ids
from agent_envs.errors import EnvStateError, InvalidActionError, MissingDependencyError
from agent_envs.harmony import VOCAB_SIZE, get_codec
from agent_envs.server.fleet import (
    FleetServer,
    ServerFleet,
    parse_urls,
    redact_urls,
    ws_url_of,
)
from agent_envs.server.protocol import (
    ERROR_BAD_REQUEST,
    ERROR_SESSION_CLOSED,
    TOKEN_ENV_VAR,
    RemoteEnvError,
    RunningHash,
    ServerAuthError,
    ServerBusyError,
    ServerUnavailableError,
)
from agent_envs.tasks.base import Task

__all__ = ["RemoteEnv", "remote"]


def remote(url: str | Sequence[str], env_id: str, *, token: str | None = None,
           full_task: bool = False, connect_timeout_s: float = 30.0,
           message_timeout_s: float | None = 1800.0, busy_timeout_s: float = 60.0,
           **env_kwargs: Any) -> RemoteEnv:
    """A gymnasium env backed by the ``agent-envs serve`` server at ``url``.

    Args:
        url: ``http://HOST:PORT`` (or ``ws://``) of the server; or several servers of the
            same env (a list, or one string with commas): each session goes to the
            least-loaded live one (:mod:`agent_envs.server.fleet`).
        env_id: The env the server serves (checked on reset: a mismatch is an error).
        token: The server's token (``agent-envs serve --token``); default: the
            ``AGENT_ENVS_SERVER_TOKEN`` environment variable, if set.
        full_task: Ask for each episode's full task (``env.task``, answer included) and the
            verdicts' reasons, as a scripted oracle or a logger needs. Only a server with a
            token grants it. Never hand such an env's task to a model.
        connect_timeout_s: Most seconds to open the WebSocket.
        message_timeout_s: Most seconds to wait for any reply (the server's own step timeout
            normally answers first); past it the step is infra-flagged. None: no limit.
        busy_timeout_s: How long ``reset`` keeps retrying while the server is at its session
            cap before raising ``ServerBusyError``.
        **env_kwargs: Env arguments (JSON values), added to the ones the server pins.

    Raises:
        MissingDependencyError: ``websockets`` is not installed (the ``[server]`` extra).
        TypeError: an env kwarg is not JSON (e.g. a ``TaskSource`` object: pass its spec).
    """
    return RemoteEnv(url, env_id, token=token, full_task=full_task,
                     connect_timeout_s=connect_timeout_s, message_timeout_s=message_timeout_s,
                     busy_timeout_s=busy_timeout_s, **env_kwargs)


class _IOLoop:
    """One daemon thread running the event loop every remote connection of the process uses."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="agent-envs-remote",
                                 daemon=True).start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def submit(cls, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, cls.get())


class RemoteEnv(gym.Env[np.ndarray, np.ndarray]):
    """A remote env session (see the module docstring); build it with :func:`remote`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 1}

    def __init__(self, url: str | Sequence[str], env_id: str, *, token: str | None = None,
                 full_task: bool = False, connect_timeout_s: float = 30.0,
                 message_timeout_s: float | None = 1800.0, busy_timeout_s: float = 60.0,
                 **env_kwargs: Any) -> None:
        try:
            import websockets  # noqa: F401
        except ModuleNotFoundError as e:
            raise MissingDependencyError(
                "agent_envs.remote needs the 'websockets' module, which comes with the "
                "[server] extra: pip install 'agent-envs[server]'") from e
        urls = parse_urls(url)
        for name, value in (("connect_timeout_s", connect_timeout_s),
                            ("busy_timeout_s", busy_timeout_s)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError(f"token must be the server's token (a non-empty string), got "
                             f"{token!r}")
        if not isinstance(full_task, bool):
            raise TypeError(f"full_task must be True or False, got {full_task!r}")
        try:
            json.dumps(env_kwargs, allow_nan=False)
        except (TypeError, ValueError) as e:
            bad = {k: type(v).__name__ for k, v in env_kwargs.items()
                   if not _is_json(v)}
            raise TypeError(f"remote env kwargs must be JSON values; not JSON: {bad} ({e}). "
                            "Pass specs instead of objects (e.g. task_source='procedural')"
                            ) from e
        #: Every server URL given; ``url``: the one this session is on (with one URL, it).
        self.urls = urls
        self.url = urls[0] if len(urls) == 1 else ",".join(urls)
        self.ws_url = ws_url_of(urls[0])
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs)
        self.connect_timeout_s = connect_timeout_s
        self.message_timeout_s = message_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self.full_task = full_task
        self._token_given = token is not None
        if token is None:
            token = os.environ.get(TOKEN_ENV_VAR) or None
        self._token = token
        #: The servers as one (several URLs), and the one this session is on.
        self.fleet = ServerFleet.shared(urls, token=token) if len(urls) > 1 else None
        self._server: FleetServer | None = None
        vocab = spaces.Discrete(VOCAB_SIZE)
        self.observation_space = spaces.Sequence(vocab, stack=True)
        self.action_space = spaces.Sequence(vocab, stack=True)
        self.render_mode = None
        self.codec = get_codec()
        self._ws: Any = None
        self._obs: np.ndarray | None = None
        self._hash: RunningHash | None = None  # of _obs, fed only new tokens
        self._info: dict[str, Any] = {}
        self._active = False
        self._task_data: tuple[str | None, dict[str, Any] | None] = (None, None)
        self._task: Task | None = None
        self._task_meta: dict[str, Any] | None = None
        self._allowed: list[int] | None = None
        self._reset_once = False

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on the server; same arguments as the local env's ``reset``."""
        super().reset(seed=seed)
        return _IOLoop.submit(self._areset(seed, options)).result()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One model turn on the server; faults come back flagged (see the module docstring)."""
        return _IOLoop.submit(self._astep(action)).result()

    def close(self) -> None:
        """End the session (idempotent)."""
        if self._ws is not None:
            _IOLoop.submit(self._aclose()).result()
        self._active = False

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, dict[str, Any]]:
        """Async twin of :meth:`reset` (usable from any event loop)."""
        super().reset(seed=seed)
        return await asyncio.wrap_future(_IOLoop.submit(self._areset(seed, options)))

    async def astep(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Async twin of :meth:`step`."""
        return await asyncio.wrap_future(_IOLoop.submit(self._astep(action)))

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._ws is not None:
            await asyncio.wrap_future(_IOLoop.submit(self._aclose()))
        self._active = False

    @property
    def task(self) -> Task | None:
        """The episode's full task, rebuilt from what the server sent on reset: only with
        ``full_task=True`` (a scripted oracle's need); None otherwise."""
        if self._task is None and self._task_data[1] is not None:
            self._task = _rebuild_task(*self._task_data)
        return self._task

    @property
    def task_meta(self) -> dict[str, Any] | None:
        """The episode's public task metadata: ``id``, ``family``, ``difficulty``, ``split``."""
        return None if self._task_meta is None else dict(self._task_meta)

    def allowed_token_ids(self) -> tuple[int, ...]:
        """The served env's ``allowed_token_ids()`` (toy envs); resets once if none ran yet.

        Raises:
            RemoteEnvError: the served env does not restrict its tokens.
        """
        if not self._reset_once:
            self.reset(seed=0)
        if self._allowed is None:
            raise RemoteEnvError(f"the env {self.env_id!r} served at "
                                 f"{redact_urls(self.url, self.urls)} has no "
                                 "allowed_token_ids() (only toy envs restrict their tokens)")
        return tuple(self._allowed)

    @property
    def tokens(self) -> np.ndarray:
        """The current observation (a copy)."""
        return np.array([] if self._obs is None else self._obs, dtype=np.int32)

    @property
    def messages(self) -> list[Any]:
        """The conversation so far, parsed from the current observation's tokens."""
        return self.codec.parse_conversation(self.tokens)

    def __del__(self) -> None:  # best effort; close() is the contract
        ws, self._ws = getattr(self, "_ws", None), None
        server, self._server = getattr(self, "_server", None), None
        fleet = getattr(self, "fleet", None)
        with contextlib.suppress(Exception):
            if server is not None and fleet is not None:
                _IOLoop.get().call_soon_threadsafe(fleet.closed, server)
            if ws is not None:
                _IOLoop.submit(ws.close())

    # -- the work, on the I/O loop ---------------------------------------------------------

    async def _connect(self, avoid: Sequence[FleetServer] = ()) -> None:
        if self.fleet is None:
            return await self._connect_one()
        server = await self.fleet.pick(avoid=avoid)  # counted there from now on
        self.url, self.ws_url = server.url, server.ws_url
        try:
            await self._connect_one()
        except BaseException as e:
            self.fleet.closed(server)
            if isinstance(e, ServerUnavailableError):
                self.fleet.failed(server, str(e.__cause__ or e))
            raise
        self._server = server

    async def _connect_one(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        headers = {} if self._token is None else {"Authorization": f"Bearer {self._token}"}
        try:
            self._ws = await connect(self.ws_url, open_timeout=self.connect_timeout_s,
                                     max_size=None, compression=None, ping_interval=20,
                                     ping_timeout=60, close_timeout=2,
                                     additional_headers=headers)
        except InvalidStatus as e:
            if e.response.status_code in (401, 403):
                raise ServerAuthError(self._auth_message()) from e
            raise ServerUnavailableError(
                f"{self.url} did not accept an OpenEnv WebSocket at {self.ws_url} (HTTP "
                f"{e.response.status_code}); is it an `agent-envs serve` server?") from e
        except (OSError, asyncio.TimeoutError) as e:
            raise ServerUnavailableError(
                f"no agent-envs server answers at {self.url} ({type(e).__name__}: {e}); start "
                f"one with `agent-envs serve {self.env_id} --port PORT`") from e
        except Exception as e:  # websockets' handshake errors (not a WebSocket server, 404)
            raise ServerUnavailableError(
                f"{self.url} did not accept an OpenEnv WebSocket at {self.ws_url} "
                f"({type(e).__name__}: {e}); is it an `agent-envs serve` server?") from e

    def _auth_message(self) -> str:
        if self._token is None:
            return (f"the env server at {self.url} needs a token and this client has none: "
                    f"pass token=TOKEN to agent_envs.remote, or set {TOKEN_ENV_VAR}=TOKEN "
                    "(the token the server was started with: agent-envs serve --token)")
        return (f"the env server at {self.url} refused this client's token (from "
                f"{'the token argument' if self._token_given else TOKEN_ENV_VAR}): it was "
                "started with another one; use the token given to `agent-envs serve --token` "
                f"(or its {TOKEN_ENV_VAR})")

    async def _drop(self, failed: str | None = None) -> None:
        """Close the connection; ``failed``: why its server counts as down (lost it)."""
        ws, self._ws = self._ws, None
        server, self._server = self._server, None
        if server is not None and self.fleet is not None:
            self.fleet.closed(server)
            if failed is not None:
                self.fleet.failed(server, failed)
        if ws is not None:
            with contextlib.suppress(Exception):  # the connection is gone either way
                await asyncio.wait_for(ws.close(), 2)

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one message and read its reply; connection faults propagate."""
        from websockets.exceptions import ConnectionClosed

        ws = self._ws
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed:
            pass  # a refusal may already be waiting in the receive buffer: read it
        raw = await asyncio.wait_for(ws.recv(), self.message_timeout_s)
        return json.loads(raw)

    async def _areset(self, seed: int | None, options: dict[str, Any] | None
                      ) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            return await self._open_episode(seed, options)
        except Exception as e:
            # A URL may carry the token (http://agent-envs:TOKEN@HOST): never in a message.
            e.args = tuple(redact_urls(a, self.urls) if isinstance(a, str) else a
                           for a in e.args)
            raise

    async def _open_episode(self, seed: int | None, options: dict[str, Any] | None
                            ) -> tuple[np.ndarray, dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        data: dict[str, Any] = {"seed": seed, "options": options,
                                "env_kwargs": self.env_kwargs, "env_id": self.env_id}
        if self.full_task:
            data["full_task"] = True
        message = {"type": "reset", "data": data}
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.05
        reconnects = 0
        tried: list[FleetServer] = []  # servers that failed this reset (a fleet's)
        while True:
            if self._ws is None:
                try:
                    await self._connect(avoid=tried)
                except ServerUnavailableError as e:
                    if self.fleet is not None and e.__cause__ is not None:
                        if self.fleet.any_live() and time.monotonic() <= deadline:
                            tried += [s for s in self.fleet.servers if s.url == self.url]
                            continue  # that server is marked down: another one
                        raise ServerUnavailableError(self.fleet._none_live()) from e
                    if (self.fleet is not None
                            or isinstance(e.__cause__, (InvalidStatus, ConnectionRefusedError))
                            or time.monotonic() > deadline):
                        raise  # nothing listens there, or it is not our server
                    await asyncio.sleep(delay)  # a full listen backlog times out: retry
                    delay = min(delay * 2, 1.0)
                    continue
            try:
                reply = await self._request(message)
            except (ConnectionClosed, OSError, asyncio.TimeoutError) as e:
                why = f"it closed a session during reset ({type(e).__name__}: {e})"
                await self._drop(failed=why)
                reconnects += 1
                if reconnects > 3 + len(self.urls) - 1:
                    raise ServerUnavailableError(
                        f"the server at {self.url} closed the session during reset "
                        f"({type(e).__name__}: {e})") from e
                continue
            data = reply.get("data") or {}
            if reply.get("type") == "error":
                server = self._server
                await self._drop()
                if data.get("code") == "CAPACITY_REACHED":
                    if time.monotonic() > deadline:
                        where = (f"the server at {self.url}" if self.fleet is None else
                                 f"every one of the {len(self.urls)} servers")
                        raise ServerBusyError(
                            f"{where} stayed at its session cap "
                            f"({data.get('max_sessions')} sessions, --max-sessions) for "
                            f"{self.busy_timeout_s:g} s; close other sessions, raise "
                            "--max-sessions, or pass a longer busy_timeout_s")
                    if self.fleet is not None and server is not None:
                        self.fleet.full(server)
                        if not self.fleet.all_full():
                            continue  # another server has room
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if data.get("code") == "SESSION_CLOSED" and reconnects < 3:
                    reconnects += 1  # the server closed this idle session: open a new one
                    continue
                raise RemoteEnvError(f"the server at {self.url} refused reset: "
                                     f"{data.get('message')} (code {data.get('code')})")
            obs = data.get("observation") or {}
            err = obs.get("error")
            if err is not None:
                if err["code"] == ERROR_SESSION_CLOSED and reconnects < 3:
                    await self._drop()  # reaped while idle: a new session
                    reconnects += 1
                    continue
                if err["code"] == ERROR_BAD_REQUEST:
                    raise _caller_error(err)
                raise RemoteEnvError(f"reset failed on the server at {self.url}: "
                                     f"{err['message']} ({err['code']})")
            self._obs = np.asarray(obs["tokens"], dtype=np.int32)
            self._hash = RunningHash(self._obs)
            self._info = obs.get("info") or {}
            self._active = True
            self._task_data = (obs.get("task_class"), obs.get("task"))
            self._task_meta = obs.get("task_meta")
            self._allowed = obs.get("allowed_token_ids")
            self._reset_once = True
            self._task = None
            return self._obs.copy(), dict(self._info)

    async def _astep(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        if not self._active or self._obs is None or self._ws is None:
            raise EnvStateError("step() called before reset() or after the episode ended; "
                                "call reset() to start an episode")
        ids, payload = _action_payload(action)
        try:
            reply = await self._request({"type": "step", "data": payload})
        except (ConnectionClosed, OSError) as e:
            return await self._flagged(ids, f"lost the connection to the env server at "
                                            f"{self.url} mid-episode ({type(e).__name__}: {e})",
                                       lost=True)
        except asyncio.TimeoutError:
            return await self._flagged(ids, f"no reply from the env server at {self.url} within "
                                            f"{self.message_timeout_s:g} s (message_timeout_s)")
        data = reply.get("data") or {}
        if reply.get("type") == "error":
            if data.get("code") == "VALIDATION_ERROR":
                raise InvalidActionError(
                    f"the server rejected the action: {_validation_text(data)}")
            return await self._flagged(ids, f"the env server at {self.url} failed the step: "
                                            f"{data.get('message')} (code {data.get('code')})")
        obs = data.get("observation") or {}
        err = obs.get("error")
        info = obs.get("info") or {}
        if err is not None:
            if err["code"] == ERROR_BAD_REQUEST:
                raise _caller_error(err)
            self._active = False
            return self._with_action(ids), 0.0, False, True, _flag_info(info, err["message"])
        if obs.get("tokens") is not None:
            new = np.asarray(obs["tokens"], dtype=np.int32)
            h = RunningHash(new)
        else:
            assert self._hash is not None
            prefix = self._with_action(ids)
            h = self._hash.copy().update(prefix[len(self._obs):])
            n, want = obs.get("prefix_len"), obs.get("prefix_hash")
            if len(prefix) != n or h.hexdigest() != want:
                return await self._flagged(
                    ids, f"observation delta does not match this client's tokens: the server "
                         f"extended a prefix of {n} tokens (hash {want}) but the client holds "
                         f"{len(prefix)} tokens (hash {h.hexdigest()}); the session was "
                         "closed", info=info)
            appended = np.asarray(obs.get("appended") or [], np.int32)
            h.update(appended)
            new = np.concatenate([prefix, appended])
        self._obs, self._hash, self._info = new, h, info
        terminated, truncated = bool(obs.get("terminated")), bool(obs.get("truncated"))
        self._active = not (terminated or truncated)
        return new.copy(), float(data.get("reward") or 0.0), terminated, truncated, dict(info)

    async def _flagged(self, ids: list[int] | None, why: str,
                       info: dict[str, Any] | None = None, *, lost: bool = False
                       ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """End the episode as an infra fault and drop the session (``lost``: the server
        went away, so new sessions avoid it)."""
        self._active = False
        why = redact_urls(why, self.urls)  # infra_error goes into episodes and bundles
        await self._drop(failed=why if lost else None)
        return self._with_action(ids), 0.0, False, True, _flag_info(info or self._info, why)

    def _with_action(self, ids: list[int] | None) -> np.ndarray:
        assert self._obs is not None
        if ids is None:
            return self._obs.copy()
        return np.concatenate([self._obs, np.asarray(ids, dtype=np.int32)])

    async def _aclose(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                await asyncio.wait_for(ws.send(json.dumps({"type": "close"})), 2)
                # Let the server close first (it answers "close" by closing the socket).
                await asyncio.wait_for(ws.wait_closed(), 2)
        await self._drop()


def _action_payload(action: Any) -> tuple[list[int] | None, dict[str, Any]]:
    """The step message's data, and the token ids when the action is token ids."""
    if isinstance(action, str):
        return None, {"text": action}
    ids = coerce_token_ids(action)  # the same checks and errors as the in-process env
    return ids, {"text": None, "tokens": ids}


def _flag_info(info: dict[str, Any], why: str) -> dict[str, Any]:
    out = dict(info)
    out.update(new_segment=False, env_token_count=0, tool_outcome=None, model_error=None,
               infra_error=why, reward_components={}, verdict=None, truncated_reason="infra")
    return out


def _caller_error(err: dict[str, Any]) -> Exception:
    """The exception the env raised on the server, raised again here (same type when known)."""
    if err.get("type") == "ServerAuthError":
        return ServerAuthError(err.get("message"))
    cls = getattr(_errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = {"TypeError": TypeError, "KeyError": KeyError}.get(str(err.get("type")),
                                                                 ValueError)
    return cls(err.get("message"))


def _validation_text(data: dict[str, Any]) -> str:
    parts = []
    for e in data.get("errors") or []:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
        parts.append(f"{loc}: {e.get('msg')}{shown}")
    return "; ".join(parts) or str(data.get("message"))


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _rebuild_task(task_class: str | None, fields: dict[str, Any]) -> Task:
    """The task object from its JSON fields; classes are imported from agent_envs only."""
    cls: Any = Task
    if task_class and task_class.startswith("agent_envs."):
        module, _, name = task_class.partition(":")
        try:
            found = getattr(importlib.import_module(module), name)
            if isinstance(found, type) and issubclass(found, Task):
                cls = found
        except (ImportError, AttributeError):
            pass
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in fields.items():
        f = names.get(k)
        if f is None:
            continue
        if isinstance(v, list) and str(f.type).startswith("tuple"):
            v = tuple(v)
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError:
        base = {f.name for f in dataclasses.fields(Task)}
        return Task(**{k: v for k, v in kwargs.items() if k in base})
