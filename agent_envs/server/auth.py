"""The server token, and the ASGI guard that checks it and keeps client errors to one line.

A server started with a token (``agent-envs serve --token``, or ``AGENT_ENVS_SERVER_TOKEN``)
answers ``/health`` to anyone and everything else (``/ws``, ``/reset``, ``/step``, ``/schema``,
``/metadata``, ...) only to a request that carries the token, as ``Authorization: Bearer
TOKEN`` or as the password of HTTP Basic auth (what ``http://USER:TOKEN@HOST:PORT`` URLs make
httpx, websockets and so OpenEnv's own clients send). A refused WebSocket gets HTTP 403
before the handshake (plain HTTP: 401 and what to send), so no session and no env is ever
made for it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from typing import Any

__all__ = ["AuthGuard", "is_loopback", "token_from_headers"]

_log = logging.getLogger("agent_envs.server")

#: Paths anyone may read (a load balancer's health check).
OPEN_PATHS = frozenset({"/health"})

#: What starlette and uvicorn raise when the client went away mid-request.
_HANGUPS = frozenset({"WebSocketDisconnect", "ClientDisconnected"})


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token an ASGI request presents (Bearer, or Basic's password), or None."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, cred = value.decode("latin-1").strip().partition(" ")
        cred = cred.strip()
        if scheme.lower() == "bearer":
            return cred
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(cred, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
    return None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AuthGuard:
    """ASGI middleware: refuse requests without the token (when one is set), and turn any
    exception that escapes a request into one log line instead of a traceback.

    A client that hangs up mid-request, or sends what the app cannot handle, is the client's
    problem: the server logs one line (``agent_envs.server``) and goes on.
    """

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.token is not None and path not in OPEN_PATHS:
            given = token_from_headers(scope.get("headers") or [])
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                await self._refuse(scope, send, "a wrong token" if given else "no token")
                return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message.get("type") in ("http.response.start", "websocket.accept",
                                       "websocket.http.response.start"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001 - one line per bad request, never a traceback
            # A client that hung up without OpenEnv's "close" message makes the handler's own
            # close fail: routine, not worth a warning.
            gone = type(e).__name__ in _HANGUPS
            _log.log(logging.DEBUG if gone else logging.WARNING, "%s %s from %s ended with "
                     "%s: %s", kind, path, _client(scope), type(e).__name__,
                     str(e)[:200] or "(no message)")
            if kind == "http" and not started:
                await _json_response(send, 500, {"detail": f"{type(e).__name__}: {e}"})

    async def _refuse(self, scope: Any, send: Any, what: str) -> None:
        _log.warning("refused %s %s from %s: %s", scope["type"], scope.get("path"),
                     _client(scope), what)
        body = {"detail": f"this agent-envs server needs its token and the request carried "
                          f"{what}: send 'Authorization: Bearer TOKEN' (agent_envs.remote(..., "
                          "token=TOKEN) or AGENT_ENVS_SERVER_TOKEN), or put it in the URL as "
                          "http://agent-envs:TOKEN@HOST:PORT"}
        if scope["type"] == "http":
            await _json_response(send, 401, body, extra=((b"www-authenticate", b"Bearer"),))
        else:
            # Refused before the handshake: the client gets HTTP 403 and no session is made.
            # (A 401 with this body, through the denial-response extension, makes uvicorn log
            # a spurious "returned without completing handshake" error per refusal.)
            await send({"type": "websocket.close", "code": 1008})


def _client(scope: Any) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _json_response(send: Any, status: int, body: dict[str, Any], *,
                         extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *extra]})
    await send({"type": "http.response.body", "body": data})
