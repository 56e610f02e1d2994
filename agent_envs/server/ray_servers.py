"""Env servers as Ray actors, placed across a Ray cluster (for users already on Ray).

    >>> import ray
    >>> from agent_envs.server.ray_servers import start_env_servers
    >>> ray.init(address="auto")
    >>> servers = start_env_servers("python-tool", 4, env_kwargs={"sandbox": "bubblewrap"},
    ...                             max_sessions=1024)      # one per node where it can
    >>> servers.urls                                        # ("http://10.0.0.5:41234", ...)
    >>> env = agent_envs.remote(servers.urls, "python-tool")  # least-loaded routing
    >>> RolloutConfig(env_id="python-tool", env_url=servers.urls)   # or a trainer, an eval
    >>> servers.stop()

Each actor runs an ordinary ``agent-envs serve`` server (the same app, start-up checks and
session cap) in its own process on the node Ray places it, listening on that node's IP on a
free port. The actors are plain servers to the clients: the URLs go wherever a list of server
URLs goes (:mod:`agent_envs.server.fleet`), from any machine that reaches the nodes.

Placement: ``"spread"`` asks Ray to spread the actors over the nodes (best effort);
``"strict-spread"`` puts each on a different node through a placement group (it waits for
as many nodes as servers). Each actor reserves ``num_cpus`` CPUs; its sessions' sandboxes run
on the same node.

The servers listen on the nodes' addresses, so they require a token: the one given, else
``AGENT_ENVS_SERVER_TOKEN``, else a new random one, which is then put in this process's
``AGENT_ENVS_SERVER_TOKEN`` so the collector, eval and trainer made here present it.

A server whose actor dies (a node lost, ``ray.kill``) is not restarted: its URL stops
answering, its episodes in flight end flagged as infra, and the fleet sends new sessions to
the other servers. The harmony vocabulary must be on every node
(``TIKTOKEN_ENCODINGS_BASE``; this process's value is passed on to the actors).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from agent_envs.errors import MissingDependencyError
from agent_envs.server.protocol import TOKEN_ENV_VAR, ServerStartError

__all__ = ["EnvServerActor", "RayEnvServers", "start_env_servers"]


class EnvServerActor:
    """One env server in a Ray actor's process (made by :func:`start_env_servers`).

    Args:
        settings: ``ServerSettings`` fields (``env_id``, ``env_kwargs``, ``max_sessions``,
            ``token``, ...).
        port: Port to listen on (0: any free one).
        check_env: Make, reset and close one env before listening (:func:`preflight`).
    """

    def __init__(self, settings: Mapping[str, Any], port: int = 0, check_env: bool = True
                 ) -> None:
        import ray

        from agent_envs.harmony.vocab import use_default_vocab
        from agent_envs.server.app import (
            bind_socket,
            make_uvicorn_server,
            preflight,
            raise_fd_limit,
        )
        from agent_envs.server.session import ServerSettings

        use_default_vocab()
        self.settings = ServerSettings(**dict(settings))
        raise_fd_limit(self.settings.max_sessions)
        if check_env:
            preflight(self.settings)
        self.host = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        sock = bind_socket(self.host, port)
        self.port = sock.getsockname()[1]
        self.server = make_uvicorn_server(self.settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True, name="agent-envs-serve")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ServerStartError(f"the env server in the Ray actor on {self.host} did "
                                       "not start")
            time.sleep(0.02)

    def info(self) -> dict[str, Any]:
        """Where it serves: ``url``, ``node_id``, ``host``, ``port`` and ``pid``."""
        return {"url": f"http://{self.host}:{self.port}", "node_id": self.node_id,
                "host": self.host, "port": self.port, "pid": os.getpid()}

    def load(self) -> dict[str, Any]:
        """Open sessions and the cap (what ``GET /load`` says)."""
        return self.server.config.app.state.env_server.load()

    def stop(self) -> None:
        """Stop serving (open sessions are closed)."""
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RayEnvServers:
    """Env servers running as Ray actors; see :func:`start_env_servers`.

    Attributes:
        env_id: The env they serve.
        urls: One URL per server (``http://NODE_IP:PORT``), in actor order.
        token: The token they require.
        actors: The Ray actor handles.
        nodes: The Ray node id each server runs on.
        pids: Each server's process id on its node.
    """

    env_id: str
    urls: tuple[str, ...]
    token: str = dataclasses.field(repr=False)
    actors: tuple[Any, ...] = dataclasses.field(repr=False)
    nodes: tuple[str, ...]
    pids: tuple[int, ...]
    placement_group: Any = dataclasses.field(default=None, repr=False)

    def remote(self, **kwargs: Any) -> Any:
        """``agent_envs.remote(self.urls, self.env_id, token=self.token, **kwargs)``."""
        import agent_envs

        kwargs.setdefault("token", self.token)
        return agent_envs.remote(list(self.urls), self.env_id, **kwargs)

    def loads(self) -> list[dict[str, Any]]:
        """Each live server's load (a dead one: ``{"error": ...}``)."""
        import ray

        out = []
        for actor in self.actors:
            try:
                out.append(ray.get(actor.load.remote(), timeout=30))
            except Exception as e:  # noqa: BLE001 - a dead actor is reported, not raised
                out.append({"error": f"{type(e).__name__}: {e}"})
        return out

    def stop(self) -> None:
        """Stop every server and end its actor (and the placement group, if any)."""
        import ray

        for actor in self.actors:
            try:
                ray.get(actor.stop.remote(), timeout=30)
            except Exception:  # noqa: BLE001, S110 - already dead
                pass
            ray.kill(actor)
        if self.placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement_group)

    def __enter__(self) -> RayEnvServers:  # noqa: PYI034 - frozen dataclass, py3.10
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_env_servers(env_id: str, n: int, *, env_kwargs: Mapping[str, Any] | None = None,
                      max_sessions: int = 256, token: str | None = None,
                      placement: Literal["spread", "strict-spread"] = "spread",
                      num_cpus: float = 1.0, check_env: bool = True,
                      timeout_s: float = 300.0, **settings: Any) -> RayEnvServers:
    """Start ``n`` env servers of ``env_id`` as Ray actors (Ray must be initialised).

    Args:
        env_id: The env every server serves.
        n: How many servers.
        env_kwargs: Env arguments pinned on every server (``--env-arg``).
        max_sessions: Each server's session cap.
        token: The servers' token (see the module docstring for the default).
        placement: ``"spread"`` (best effort) or ``"strict-spread"`` (one per node).
        num_cpus: CPUs each actor reserves.
        check_env: Each server makes, resets and closes one env before listening.
        timeout_s: Most seconds to wait for every server to listen.
        **settings: Other ``ServerSettings`` fields (``idle_timeout_s``, ``step_timeout_s``,
            ``workers``, ``env_calls``).

    Raises:
        MissingDependencyError: Ray is not installed (the ``[ray]`` extra).
        ValueError: a bad ``n``, ``placement`` or setting (checked before any actor starts).
        ServerStartError: a server could not start (its error, e.g. a bad env argument).
    """
    try:
        import ray
    except ModuleNotFoundError as e:
        raise MissingDependencyError("env servers as Ray actors need Ray: pip install "
                                     "'agent-envs[ray]'") from e
    from agent_envs.server.session import ServerSettings

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (how many servers) must be an integer >= 1, got {n!r}")
    if placement not in ("spread", "strict-spread"):
        raise ValueError(f"placement must be 'spread' or 'strict-spread', got {placement!r}")
    if not ray.is_initialized():
        raise ValueError("Ray is not initialised: call ray.init() (or ray.init(address="
                         "'auto') to join a cluster) before start_env_servers")
    token = token or os.environ.get(TOKEN_ENV_VAR) or secrets.token_hex(16)
    os.environ.setdefault(TOKEN_ENV_VAR, token)
    fields = {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}),
              "max_sessions": max_sessions, "token": token, **settings}
    ServerSettings(**fields)  # bad settings fail here, once, not in n actors
    env_vars = {k: os.environ[k] for k in ("TIKTOKEN_ENCODINGS_BASE",) if k in os.environ}
    options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": 0,
                               "runtime_env": {"env_vars": env_vars}}
    group = None
    if placement == "strict-spread":
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = placement_group([{"CPU": num_cpus}] * n, strategy="STRICT_SPREAD")
        ready, _ = ray.wait([group.ready()], timeout=timeout_s)
        if not ready:
            remove_placement_group(group)  # else it stays pending, claiming the CPUs for good
            raise ServerStartError(f"Ray could not place {n} env servers on {n} different "
                                   f"nodes within {timeout_s:g} s (strict-spread needs {n} "
                                   f"nodes with {num_cpus:g} free CPU each); use "
                                   "placement='spread', or add nodes")
    actor_cls = ray.remote(EnvServerActor)
    actors = []
    for i in range(n):
        opts = dict(options)
        if group is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=i)
        else:
            opts["scheduling_strategy"] = "SPREAD"
        actors.append(actor_cls.options(**opts).remote(fields, 0, check_env))
    try:
        infos = ray.get([a.info.remote() for a in actors], timeout=timeout_s)
    except Exception as e:
        for a in actors:
            ray.kill(a)
        if group is not None:
            remove_placement_group(group)
        cause = getattr(e, "cause", None) or e
        raise ServerStartError(f"an env server actor of {env_id} did not start: "
                               f"{type(cause).__name__}: {cause}") from e
    return RayEnvServers(env_id=env_id, urls=tuple(i["url"] for i in infos), token=token,
                         actors=tuple(actors), nodes=tuple(i["node_id"] for i in infos),
                         pids=tuple(i["pid"] for i in infos), placement_group=group)
