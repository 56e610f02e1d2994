"""Real servers on loopback: uvicorn in a thread (``serve``) or ``agent-envs serve`` in a
subprocess (``serve_process``), so tests can kill it.

Both start with the token ``TOKEN`` (``token=None`` to ``serve`` for a server without one),
and both fixtures put it in ``AGENT_ENVS_SERVER_TOKEN`` for the test, so clients made with
``agent_envs.remote`` (and the collector, the CLI, the trainer) present it as users would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("openenv.core", reason="needs the [server] extra (openenv-core)")

from agent_envs.server.app import ServerSettings, bind_socket, make_uvicorn_server
from agent_envs.server.protocol import TOKEN_ENV_VAR

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-5f2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ThreadServer:
    """An uvicorn server in a daemon thread; ``url``, ``app`` and ``stop()``."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = make_uvicorn_server(settings)
        self.app = self.server.config.app
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def env_server(self) -> Any:
        """OpenEnv's HTTPEnvServer behind the app (sessions, capacity)."""
        return self.app.state.env_server

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ThreadServer]]:
    """``serve(env_id, **settings)`` starts a server (token ``TOKEN`` unless given); all are
    stopped after the test."""
    monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN)
    started: list[ThreadServer] = []

    def start(env_id: str, **kw: Any) -> ThreadServer:
        kw.setdefault("token", TOKEN)
        s = ThreadServer(ServerSettings(env_id=env_id, **kw))
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


class ProcessServer:
    """``agent-envs serve ...`` in a subprocess; ``url``, ``banner`` (its "serving" line),
    ``preamble`` (what it printed before: warnings) and ``kill()``/``stop()``."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent_envs.cli", "serve", *args, "--port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.preamble = ""
        while True:  # blocks until the server listens (or dies)
            line = self.proc.stdout.readline()
            m = re.search(r"^serving \S+ on (http://\S+) ", line)
            if m is not None or not line:
                break
            self.preamble += line
        if m is None:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"agent-envs serve did not start: {self.preamble}{rest}")
        self.url = m.group(1)
        self.banner = line
        httpx.get(self.url + "/health", timeout=10).raise_for_status()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> str:
        """Interrupt the server (as Ctrl-C does) and return what it printed after its banner."""
        self.proc.send_signal(2)
        try:
            rest, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate(timeout=15)
        return rest


@pytest.fixture
def serve_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ProcessServer]]:
    """``serve_process(*cli_args)`` runs ``agent-envs serve`` (with ``TOKEN``, from the
    environment); killed after the test."""
    monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN)
    started: list[ProcessServer] = []

    def start(*args: str) -> ProcessServer:
        s = ProcessServer(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()
