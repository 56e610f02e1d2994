"""``agent-envs serve`` mistakes fail at start-up with the argument and the fix, never with a
traceback, and bad client requests cost the server log one line each (issue 18).

| input | before | after |
|---|---|---|
| ``--port 99999`` | OverflowError traceback | ``--port must be a TCP port from 0 to 65535`` |
| a port in use | OSError 98 traceback | ``the port is in use ...; pick another --port`` |
| ``--env-arg sandbox=bubblewarp`` | served; every tool call an infra error | refused at start, did you mean 'bubblewrap' |
| ``--env-arg memory_mb=1`` | served; every tool call an infra error | refused at start, names the argument |
| ``--env-arg max_turnz=2`` | served; every reset failed | refused at start, did you mean 'max_turns' |
| ``--env-arg max_turns=abc`` | error without the argument's name | names ``--env-arg max_turns="abc"`` |
| a client hanging up, bad JSON, no token | ~60 lines of ASGI traceback each | one line each |
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agent_envs.cli import main
from agent_envs.server.app import ServerSettings, preflight
from agent_envs.server.protocol import ServerStartError
from tests.agent_envs.server.conftest import AUTH


def _serve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["serve", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_refused_with_the_range(capsys, port) -> None:
    rc, out, err = _serve(capsys, "toy-digit", "--port", port)
    assert rc == 2 and out == ""
    assert err == (f"error: --port must be a TCP port from 0 to 65535 (0: any free port), got "
                   f"{port}\n")


def test_a_port_in_use_is_refused_with_the_fix(capsys) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        rc, out, err = _serve(capsys, "toy-digit", "--port", str(port))
    finally:
        taken.close()
    assert rc == 2 and out == ""
    assert err == (f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another "
                   f"agent-envs serve, or another program); pick another --port, or --port 0 "
                   f"for any free one\n")


def test_a_host_that_is_not_this_machines_is_refused(capsys) -> None:
    rc, _, err = _serve(capsys, "toy-digit", "--host", "192.0.2.1", "--port", "0")
    assert rc == 2 and "'192.0.2.1' is not an address of this machine" in err
    assert "--host 127.0.0.1" in err


@pytest.mark.parametrize(("env_arg", "wanted"), [
    ("sandbox=bubblewarp", ["--env-arg sandbox=\"bubblewarp\"", "did you mean 'bubblewrap'"]),
    ("max_turnz=2", ["--env-arg max_turnz=2", "did you mean 'max_turns'"]),
    ("max_turns=abc", ["--env-arg max_turns=\"abc\""]),
    ("memory_mb=1", ["--env-arg memory_mb=1"]),
])
def test_bad_env_args_fail_at_start_up_naming_the_argument(capsys, env_arg, wanted) -> None:
    t0 = time.monotonic()
    rc, out, err = _serve(capsys, "python-tool", "--port", "0", "--env-arg", env_arg)
    assert rc == 2 and out == ""  # never listened: no "serving ..." line
    assert err.startswith("error: cannot serve python-tool-v0 with --env-arg ")
    for text in wanted:
        assert text in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert time.monotonic() - t0 < 60


def test_with_several_env_args_the_culprit_is_named(capsys) -> None:
    rc, _, err = _serve(capsys, "toy-digit", "--port", "0", "--env-arg", "max_turns=3",
                        "--env-arg", "max_turnz=2", "--env-arg", "fixed_target=4")
    assert rc == 2
    assert "with --env-arg max_turns=3 --env-arg max_turnz=2 --env-arg fixed_target=4:" in err
    assert err.rstrip().endswith("; the culprit: --env-arg max_turnz=2. Fix the --env-arg "
                                 "value(s) (`agent-envs list` shows the envs; "
                                 "make('toy-digit', ...) takes the same arguments)")


def test_preflight_makes_resets_and_closes_one_env_and_opens_a_sandbox_session() -> None:
    made, closed, opened = [], [], []

    class Session:
        def close(self) -> None:
            opened.append("closed")

    class Sandbox:
        def open(self) -> Session:
            opened.append("opened")
            return Session()

    from agent_envs.envs.toy import ToyDigitEnv

    class WithSandbox(ToyDigitEnv):
        def __init__(self, **kw: object) -> None:
            made.append(kw)
            super().__init__(**kw)

        @property
        def sandbox(self) -> Sandbox:
            return Sandbox()

        def close(self) -> None:
            closed.append(True)
            super().close()

    preflight(ServerSettings(env_id="toy-digit", env_kwargs={"max_turns": 2},
                             env_factory=WithSandbox))
    assert made == [{"max_turns": 2}] and closed == [True] and opened == ["opened", "closed"]

    def hangs(**kw: object) -> None:
        time.sleep(30)

    with pytest.raises(ServerStartError, match=r"took longer than the step timeout \(0.2 s\)"):
        preflight(ServerSettings(env_id="toy-digit", env_factory=hangs, step_timeout_s=0.2))


def test_good_env_args_start_and_the_server_says_it_needs_a_token(serve_process) -> None:
    server = serve_process("python-tool", "--env-arg", "sandbox=local", "--env-arg",
                           "max_turns=4")
    assert server.banner.startswith("serving python-tool-v0 on http://127.0.0.1:")
    assert server.banner.rstrip().endswith("token required")
    assert httpx.get(server.url + "/metadata", headers=AUTH).json()["name"] == "python-tool-v0"


def test_bad_client_requests_cost_the_log_one_line_each(serve_process) -> None:
    """A client that hangs up without OpenEnv's close message (which made OpenEnv's own
    close raise: ~60 lines of traceback), bad JSON, and requests without the token."""
    server = serve_process("toy-digit", "--log-level", "info")
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    for _ in range(3):  # reset, then hang up (close the socket, no "close" message)
        with connect(ws_url, additional_headers=AUTH, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "reset", "data": {"seed": 0}}))
            ws.recv(timeout=10)
    with connect(ws_url, additional_headers=AUTH, open_timeout=10) as ws:
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=10))["data"]["code"] == "INVALID_JSON"
        ws.send(json.dumps({"type": "step", "data": {"tokens": [1]}}))
        assert json.loads(ws.recv(timeout=10))["data"]["code"] == "VALIDATION_ERROR"
    with pytest.raises(InvalidStatus), connect(ws_url, open_timeout=10):
        pass
    assert httpx.post(server.url + "/reset", content=b"garbage", headers=AUTH).status_code == 422
    assert httpx.get(server.url + "/schema").status_code == 401
    log = server.stop()
    assert "Traceback" not in log and "ASGI" not in log, log
    assert log.count("refused websocket /ws from 127.0.0.1:") == 1
    assert log.count("refused http /schema from 127.0.0.1:") == 1
    # info level: uvicorn's one line per connection and request, nothing more
    assert len(log.strip().splitlines()) < 25, log
