"""The zygote client must not leak sockets when its zygote dies mid-conversation."""

from __future__ import annotations

import gc
import os
import socket
import threading
import warnings

import pytest

from sandboxes import Limits, SandboxError
from sandboxes._zygote_client import ZygoteClient


@pytest.fixture
def hangup_server(tmp_path):
    """A stand-in for a dying zygote: it accepts connections and hangs up at once."""
    path = str(tmp_path / "z.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    srv.settimeout(0.05)  # so that the thread sees stop (close() does not wake accept())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path
    stop.set()
    t.join(timeout=5)
    srv.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("call", ["control", "open"])
def test_no_socket_leaks_when_the_zygote_hangs_up(hangup_server, call):
    client = ZygoteClient(hangup_server, backend="test", connect_timeout_s=2.0)
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with pytest.raises(SandboxError, match="zygote"):
                if call == "control":
                    client.control({"op": "ping"})
                else:
                    client.open(Limits())
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]
    assert _open_fds() <= before
    client.close()


def test_close_does_not_wait_and_keeps_the_control_connection_in_step(tmp_path):
    """``close`` queues its kill without waiting for the answer (sessions without a pidfd, as
    in the bubblewrap and docker backends); later control requests still get their own
    answers, and the closed sessions' processes and scratch dirs go."""
    from sandboxes import make_sandbox
    from tests.sandboxes.conftest import FAST, pid_alive, wait_until

    with make_sandbox("local", limits=FAST) as sb:
        client = ZygoteClient(sb._client.socket_path, backend="test")
        a, b, c = (client.open(FAST) for _ in range(3))
        a.run("import subprocess\nsubprocess.Popen(['sleep', '60'])")
        pids = [s.pid for s in (a, b, c)]
        scratch = [s.info["scratch"] for s in (a, b)]
        a.close()
        b.close()
        assert client.kill(c.id) is True  # not the answer to a queued kill
        assert client.ping()["pid"] > 0
        assert wait_until(lambda: not any(pid_alive(p) for p in pids))
        assert wait_until(lambda: not any(os.path.exists(d) for d in scratch))
        assert wait_until(lambda: not client.ping()["sessions"])
        c.close()
        client.close()
