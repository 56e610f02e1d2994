"""A scripted OpenAI-compatible completions server on 127.0.0.1, for tests and demos.

It speaks the subset of vLLM's ``/v1/completions`` API that
``OpenAICompletionsPolicy`` uses (token-id prompts, ``logprobs``,
``stop_token_ids``, ``return_tokens_as_token_ids``, ``return_token_ids``) and
returns scripted token ids and log-probs. It can be told to fail, flake, stall
or die, so that retry and fault handling can be tested over real HTTP.

Example:
    >>> with ScriptedCompletionsServer() as server:
    ...     policy = OpenAICompletionsPolicy(server.url, model="scripted")
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent_envs.harmony import CALL

__all__ = ["ScriptedCompletion", "ScriptedCompletionsServer", "default_script"]


@dataclass(frozen=True, kw_only=True)
class ScriptedCompletion:
    """What the server answers for one request."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


Script = Callable[[dict[str, Any]], ScriptedCompletion]


def default_script(body: dict[str, Any]) -> ScriptedCompletion:
    """Deterministic tokens in [1000, 2000) seeded by (prompt, seed), ending in a stop token.

    The completion has ``1 + (seed_of_prompt % 8)`` tokens before the stop
    token; it is cut at ``max_tokens`` (``finish_reason="length"``).
    """
    prompt = body["prompt"]
    rng = random.Random(hash((tuple(prompt), body.get("seed"))))
    n = 1 + rng.randrange(8)
    toks = [rng.randrange(1000, 2000) for _ in range(n)]
    stops = body.get("stop_token_ids") or [CALL]
    toks.append(int(stops[0]))
    lps = [-round(rng.uniform(0.01, 3.0), 6) for _ in toks]
    cap = int(body.get("max_tokens", 16))
    if len(toks) > cap:
        return ScriptedCompletion(token_ids=toks[:cap], logprobs=lps[:cap], finish_reason="length")
    return ScriptedCompletion(token_ids=toks, logprobs=lps, finish_reason="stop")


class ScriptedCompletionsServer:
    """A real HTTP server in a background thread that answers ``POST /v1/completions``.

    Args:
        script: Maps a request body to a ``ScriptedCompletion``.
        port: 0 picks a free port.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        bodies: Every JSON body received, in arrival order.
        fail_status: While ``fail_remaining > 0`` each request is answered with
            this status (and decrements it); use ``flake(n, status)``.
        reject: When set, ``(status, body)`` answered to every request.
        delay_s: Sleep before answering each request.
    """

    def __init__(self, script: Script = default_script, *, port: int = 0) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.fail_remaining = 0
        self.fail_status = 503
        self.reject: tuple[int, str] | None = None
        self.delay_s = 0.0
        self.served = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._alive = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with outer._lock:
                    outer._conns.add(self.connection)

            def finish(self) -> None:
                with outer._lock:
                    outer._conns.discard(self.connection)
                super().finish()

            def _send(self, status: int, payload: str) -> None:
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if self.path.rstrip("/") != "/v1/completions":
                    self._send(404, json.dumps({"error": f"no route {self.path}"}))
                    return
                with outer._lock:
                    outer.bodies.append(body)
                    failing = outer.fail_remaining > 0
                    if failing:
                        outer.fail_remaining -= 1
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if not outer._alive:  # killed while this request waited
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if outer.reject is not None:
                    self._send(*outer.reject)
                    return
                if failing:
                    self._send(outer.fail_status, json.dumps({"error": "scripted failure"}))
                    return
                c = outer.script(body)
                choice = {
                    "index": 0, "text": "", "finish_reason": c.finish_reason,
                    "token_ids": c.token_ids if body.get("return_token_ids") else None,
                    "logprobs": {
                        "tokens": [f"token_id:{t}" for t in c.token_ids],
                        "token_logprobs": c.logprobs,
                        "top_logprobs": None, "text_offset": [0] * len(c.token_ids),
                    },
                }
                with outer._lock:
                    outer.served += 1
                self._send(200, json.dumps({
                    "id": "cmpl-scripted", "object": "text_completion",
                    "model": body.get("model"), "choices": [choice],
                }))

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        # Clients that time out or a kill() break connections mid-reply: expected here.
        self._server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def flake(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with HTTP ``status``."""
        with self._lock:
            self.fail_remaining, self.fail_status = n, status

    def kill(self) -> None:
        """Stop serving and close the listening socket (later requests get connection errors)."""
        if self._alive:
            self._alive = False
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                conns = list(self._conns)
            for conn in conns:  # drop kept-alive connections too, like a crashed server
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedCompletionsServer:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
