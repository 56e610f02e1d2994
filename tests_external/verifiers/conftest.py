"""Fixtures for driving ``agent-envs serve`` with verifiers' ``OpenEnvTaskset``.

Run with ``.venv-verifiers/bin/python -m pytest tests_external/verifiers`` (build the venv
with ``bash scripts/setup_verifiers.sh``). The env server is the real ``agent-envs serve``,
run from the main ``.venv`` (``AGENT_ENVS_SERVER_PYTHON`` overrides the interpreter) with a
token, on loopback, as an env box would run it; verifiers and OpenEnv's client run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

_ROOT = Path(__file__).resolve().parents[2]
_VOCAB = _ROOT.parent / "shared" / "vocab"
if not os.environ.get("TIKTOKEN_ENCODINGS_BASE") and (_VOCAB / "o200k_base.tiktoken").is_file():
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)

try:
    import verifiers.v1  # noqa: F401
except ImportError as e:  # pragma: no cover - the wrong interpreter
    raise RuntimeError(
        "tests_external/verifiers needs verifiers, which lives in its own venv: run `bash "
        "scripts/setup_verifiers.sh`, then `.venv-verifiers/bin/python -m pytest "
        "tests_external/verifiers`.") from e

TOKEN = "verifiers-test-token"


def server_python() -> str:
    """The interpreter that runs ``agent-envs serve`` (the main venv's, with [server])."""
    python = os.environ.get("AGENT_ENVS_SERVER_PYTHON") or str(_ROOT / ".venv" / "bin" / "python")
    if not Path(python).is_file():
        raise RuntimeError(f"no interpreter for the env server at {python}: build the main venv "
                           "(bash scripts/setup.sh dev) or set AGENT_ENVS_SERVER_PYTHON to a "
                           "python with agent-envs[server]")
    return python


class EnvServer:
    """``agent-envs serve ENV --token TOKEN`` in a subprocess of the main venv."""

    def __init__(self, env_id: str, *env_args: str) -> None:
        args = [a for kv in env_args for a in ("--env-arg", kv)]
        self.proc = subprocess.Popen(
            [server_python(), "-m", "agent_envs.cli", "serve", env_id, "--port", "0",
             "--token", TOKEN, *args],
            cwd=_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        seen = ""
        while True:
            line = self.proc.stdout.readline()
            m = re.search(r"^serving \S+ on (http://\S+) ", line)
            if m is not None or not line:
                break
            seen += line
        if m is None:
            self.stop()
            raise RuntimeError(f"agent-envs serve {env_id} did not start:\n{seen}")
        self.url = m.group(1)
        #: The URL with the token as Basic credentials: what a harness that takes only a
        #: base URL (verifiers' OpenEnvTaskset) is given; httpx and websockets send it.
        self.authed_url = self.url.replace("http://", f"http://agent-envs:{TOKEN}@")
        httpx.get(self.url + "/health", timeout=30).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def env_server() -> Iterator[Callable[..., EnvServer]]:
    """``env_server(env_id, "key=value", ...)``: started once per module and arguments."""
    started: dict[tuple[str, ...], EnvServer] = {}

    def start(env_id: str, *env_args: str) -> EnvServer:
        key = (env_id, *env_args)
        if key not in started:
            started[key] = EnvServer(env_id, *env_args)
        return started[key]

    yield start
    for server in started.values():
        server.stop()


def pytest_report_header() -> str:
    return f"env server python: {server_python()} (sys.executable: {sys.executable})"
