"""Several env servers as one: sessions spread over a list of URLs (many boxes).

    >>> env = agent_envs.remote(["http://box-a:8000", "http://box-b:8000"], "python-tool")
    >>> env = agent_envs.remote("http://box-a:8000,http://box-b:8000", "python-tool")  # same

Everywhere a server URL goes (``agent_envs.remote``, ``RolloutConfig.env_url``,
``EvalConfig.env_url``, ``env.url`` in a train config, ``--env-url`` and
``AGENT_ENVS_ENV_URL``), a list of URLs, or one string of URLs separated by commas, spreads
the sessions over those servers. Every server must serve the same env.

Routing. A new session goes to the live server with the lowest load: its open sessions (as
its ``GET /load`` last said, plus the sessions this process opened and closed there since)
over its ``--max-sessions``. A session stays on its server for all its episodes. Loads are
read again at most every ``probe_interval_s``.

Faults. A server that does not answer (nothing listens, or the connection drops) is marked
down: the episode it was running ends flagged as infra (``info["infra_error"]``, as with one
server), and new sessions go to the other servers. A down server is tried again after a
back-off (1 s, doubling to 30 s) once its ``/health`` answers. A server at its session cap is
skipped while another has room; when every server is full, ``reset`` waits as it does for one
server (``busy_timeout_s``). Only when no server answers does ``reset`` raise
:class:`~agent_envs.server.protocol.ServerUnavailableError`, naming them all.

One fleet per process and list of URLs (and token) is shared by every env made with that
list, so its loads and down marks are the same for all of them. Its state lives on the remote
client's I/O loop (one thread), like the connections themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

from agent_envs.server.protocol import ServerUnavailableError

__all__ = ["ServerFleet", "parse_urls", "redact_urls"]

_SCHEMES = ("http://", "https://", "ws://", "wss://")


def parse_urls(url: str | Sequence[str], *, what: str = "url") -> tuple[str, ...]:
    """The server URLs in ``url``: one URL, several separated by commas, or a list of them.

    Duplicates are dropped (first one kept); surrounding spaces and trailing slashes too.

    Raises:
        ValueError: no URL, or one that does not look like ``http://HOST:PORT``; the message
            names it and ``what`` (the argument or field it came from).
    """
    if isinstance(url, str):
        parts = url.split(",")
    elif isinstance(url, Sequence) and all(isinstance(u, str) for u in url):
        parts = [p for u in url for p in u.split(",")]
    else:
        raise ValueError(f"{what} must be a server URL (http://HOST:PORT), several separated "
                         f"by commas, or a list of them; got {url!r}")
    out: list[str] = []
    for raw in parts:
        u = raw.strip().rstrip("/")
        if not u:
            continue
        if not u.startswith(_SCHEMES) or len(u.split("://", 1)[1]) == 0:
            raise ValueError(f"{what}: {raw.strip()!r} is not a server URL; each must look like "
                             f"http://HOST:PORT (an agent-envs serve server), e.g. "
                             f"http://127.0.0.1:8000,http://10.0.0.2:8000")
        if u not in out:
            out.append(u)
    if not out:
        raise ValueError(f"{what} holds no server URL (got {url!r}); give http://HOST:PORT, or "
                         "several separated by commas")
    return tuple(out)


def redact_urls(text: str, urls: Sequence[str]) -> str:
    """``text`` with the password of every URL in ``urls`` written as ``***``.

    A server URL may carry the token as its password (``http://agent-envs:TOKEN@HOST:PORT``);
    messages that name the URL (errors, an episode's ``infra_error``, which eval bundles
    publish) must not carry the token with it.
    """
    from urllib.parse import urlsplit

    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            text = text.replace(f":{password}@", ":***@").replace(password, "***")
    return text


def ws_url_of(url: str) -> str:
    """The ``/ws`` WebSocket URL of a server URL."""
    base = url.rstrip("/")
    for a, b in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(a):
            base = b + base[len(a):]
    return base if base.endswith("/ws") else base + "/ws"


def http_url_of(url: str) -> str:
    """The HTTP base URL of a server URL (``ws://`` becomes ``http://``, ``/ws`` is dropped)."""
    base = url.rstrip("/")
    base = base.removesuffix("/ws")
    for a, b in (("wss://", "https://"), ("ws://", "http://")):
        if base.startswith(a):
            base = b + base[len(a):]
    return base


@dataclasses.dataclass(eq=False)
class FleetServer:
    """One server of a fleet, as this process sees it."""

    url: str
    ws_url: str
    sessions: int = 0  #: sessions this process holds there now
    reported: int | None = None  #: open sessions at the last ``/load`` (every client's)
    since_report: int = 0  #: sessions this process opened minus closed since that report
    capacity: int | None = None  #: its ``--max-sessions``
    down_until: float = 0.0  #: not tried before this time (monotonic)
    failures: int = 0  #: failures in a row
    full_until: float = 0.0  #: at its session cap: skipped until then if another has room
    last_error: str | None = None

    @property
    def load(self) -> float:
        """Open sessions over capacity (every client's where ``/load`` said, else ours)."""
        n = self.sessions if self.reported is None else max(0, self.reported + self.since_report)
        return n / (self.capacity or 1)


class ServerFleet:
    """Several servers of one env; see the module docstring. Use :meth:`shared`.

    Args:
        urls: The servers (see :func:`parse_urls`).
        token: The token sent to ``/load`` and ``/health`` (the servers' ``--token``).
        probe_interval_s: Loads are read again at most this often.
        probe_timeout_s: Most seconds a ``/load`` or ``/health`` request may take.
    """

    _registry: dict[tuple[tuple[str, ...], str | None], ServerFleet] = {}  # noqa: RUF012
    _registry_lock = threading.Lock()

    def __init__(self, urls: str | Sequence[str], *, token: str | None = None,
                 probe_interval_s: float = 2.0, probe_timeout_s: float = 3.0) -> None:
        self.urls = parse_urls(urls)
        self.servers = [FleetServer(u, ws_url_of(u)) for u in self.urls]
        self.token = token
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self._probed_at = -float("inf")
        self._probing: asyncio.Task[None] | None = None

    @classmethod
    def shared(cls, urls: str | Sequence[str], *, token: str | None = None) -> ServerFleet:
        """The process's fleet for these URLs and token (made on first use)."""
        key = (parse_urls(urls), token)
        with cls._registry_lock:
            fleet = cls._registry.get(key)
            if fleet is None:
                fleet = cls._registry[key] = cls(key[0], token=token)
            return fleet

    # -- choosing ---------------------------------------------------------------------------

    async def pick(self, *, avoid: Sequence[FleetServer] = ()) -> FleetServer:
        """The live server with the lowest load, with a session counted there at once (so a
        burst of picks spreads); hand it back with :meth:`closed` when the session ends or
        fails to open. ``avoid``: servers just tried for this session (used only when
        nothing else is live).

        Raises:
            ServerUnavailableError: every server is down (each one's last error named).
        """
        now = time.monotonic()
        recheck = any(s.failures and s.down_until <= now for s in self.servers)
        if recheck or now - self._probed_at > self.probe_interval_s:
            await self._probe_all()
            now = time.monotonic()
        live = [s for s in self.servers if s.down_until <= now and not s.failures]
        if not live:
            raise ServerUnavailableError(self._none_live())
        fresh = [s for s in live if s not in avoid] or live
        roomy = [s for s in fresh if s.full_until <= now] or fresh
        best = min(roomy, key=lambda s: (s.load, s.sessions, self.servers.index(s)))
        best.sessions += 1
        best.since_report += 1
        return best

    def any_live(self) -> bool:
        """Whether some server is not marked down (or is due to be checked again)."""
        now = time.monotonic()
        return any(s.down_until <= now for s in self.servers)

    def all_full(self) -> bool:
        """Whether every live server refused a session for its cap just now."""
        now = time.monotonic()
        live = [s for s in self.servers if s.down_until <= now and not s.failures]
        return bool(live) and all(s.full_until > now for s in live)

    # -- what happened ----------------------------------------------------------------------

    def closed(self, server: FleetServer) -> None:
        """A session :meth:`pick` counted on ``server`` ended (closed, dropped or lost) or
        never opened."""
        server.sessions = max(0, server.sessions - 1)
        server.since_report -= 1

    def failed(self, server: FleetServer, why: str) -> None:
        """``server`` did not answer or dropped a session: new sessions avoid it until it
        answers a probe again, which is tried after a back-off (1 s, doubling to 30 s)."""
        server.failures += 1
        server.last_error = redact_urls(why, self.urls)
        server.down_until = time.monotonic() + min(30.0, 2.0 ** (server.failures - 1))

    def full(self, server: FleetServer) -> None:
        """``server`` refused a session at its cap: prefer the others for a moment."""
        server.full_until = time.monotonic() + 0.5

    def describe(self) -> list[dict[str, Any]]:
        """Each server's URL, sessions of this process, load, and whether it is down."""
        now = time.monotonic()
        return [{"url": redact_urls(s.url, self.urls), "sessions": s.sessions,
                 "load": round(s.load, 3),
                 "down": s.down_until > now, "last_error": s.last_error}
                for s in self.servers]

    def _none_live(self) -> str:
        errors = "; ".join(f"{redact_urls(s.url, self.urls)}: {s.last_error or 'down'}"
                           for s in self.servers)
        return (f"no agent-envs server answers at any of the {len(self.servers)} URLs "
                f"({errors}); start them (`agent-envs serve ENV --port PORT` on each box) or "
                "fix the URL list")

    # -- probing ----------------------------------------------------------------------------

    async def _probe_all(self) -> None:
        """Read the ``/load`` of every server not in a back-off (one probe at a time, however
        many sessions ask); a down server that answers is live again."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe_once())
        await asyncio.shield(self._probing)

    async def _probe_once(self) -> None:
        import httpx

        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        now = time.monotonic()
        async with httpx.AsyncClient(timeout=self.probe_timeout_s, headers=headers) as client:
            await asyncio.gather(*(self._probe(client, s) for s in self.servers
                                   if s.down_until <= now))
        self._probed_at = time.monotonic()

    async def _probe(self, client: Any, server: FleetServer) -> None:
        import httpx

        base = http_url_of(server.url)
        try:
            r = await client.get(base + "/load")
            if r.status_code == 404:  # an older server: alive, load unknown
                r = await client.get(base + "/health")
                r.raise_for_status()
                server.reported = None
            elif r.status_code in (401, 403):
                server.reported = None  # alive; the WebSocket connect names the token problem
            else:
                r.raise_for_status()
                data = r.json()
                server.reported = int(data["sessions"])
                server.capacity = int(data["max_sessions"]) or None
                server.since_report = 0
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            self.failed(server, f"{type(e).__name__}: {e}")
            return
        server.down_until = 0.0  # it answers (again)
        server.failures = 0
