"""The security suite every backend must pass (or, for ``local``, xfail where it says so).

Each test attacks from inside a session and checks the effect from the host. Backends that
cannot run here are skipped with the reason; ``local`` xfails (strictly) the filesystem tests
that need a jail it does not have, as its ``protections()`` notes state.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes import Limits, Sandbox, SandboxUnavailable, make_sandbox
from tests.sandboxes.conftest import backend_params, descendants, pid_alive, wait_until

SECRET_ENV = "AGENT_ENVS_TEST_SECRET"
PROJECT_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"
LIMITS = Limits(timeout_s=6.0, cpu_s=30, memory_mb=512, max_procs=32, max_file_mb=8,
                max_output_bytes=4096)


@pytest.fixture(scope="module", params=backend_params())
def sb(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    os.environ[SECRET_ENV] = "hunter2-do-not-leak"
    try:
        try:
            box = make_sandbox(request.param, limits=LIMITS)
        except SandboxUnavailable as e:
            pytest.skip(f"{request.param} unavailable: {e}")
        yield box
        box.close()
    finally:
        os.environ.pop(SECRET_ENV, None)


def _has_jail(sb: Sandbox) -> bool:
    return sb.protections().readonly_root


def _drops_uid(sb: Sandbox) -> bool:
    return _has_jail(sb) or bool(getattr(sb, "features", {}).get("uid_drop"))


def expect_blocked(blocked: bool, *, protected: bool, reason: str, detail: str) -> None:
    """Assert an attack was blocked where ``protections()`` claims it is; strict xfail elsewhere.

    Where the backend states the protection is missing, a successful attack is an xfail and a
    blocked one fails (like ``xfail(strict=True)``): then ``protections()`` undersells the
    backend and must be corrected.
    """
    if protected:
        assert blocked, detail
    elif blocked:
        pytest.fail(f"XPASS(strict): {reason} -- but the attack was blocked; make "
                    "protections() say so and drop this xfail")
    else:
        pytest.xfail(reason)


@pytest.fixture()
def tcp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's 127.0.0.1 that records what reaches it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            got.append(c.recv(100) or b"<connected>")
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join()
    srv.close()


def test_no_network_to_the_hosts_loopback(sb, tcp_server):
    port, got = tcp_server
    with sb.open() as s:
        r = s.run(f"import socket\nc = socket.create_connection(('127.0.0.1', {port}), "
                  "timeout=2)\nc.sendall(b'leak')\n'connected'")
        assert r.value is None and r.error is not None, r.render()
        assert any(e in r.error for e in ("ConnectionRefused", "Network is unreachable",
                                          "OSError", "timed out")), r.error
        r = s.run("import socket\nsocket.getaddrinfo('example.com', 80)")
        assert r.error is not None
    time.sleep(0.3)
    assert got == []


def test_owner_only_host_files_are_unreadable(sb, tmp_path):
    secret = tmp_path / "secret.txt"  # pytest's tmp dirs are 0700
    secret.write_text("TOP-SECRET-1")
    secret.chmod(0o600)
    with sb.open() as s:
        r = s.run(f"open({str(secret)!r}).read()")
        r2 = s.run("import os\nos.path.exists('/root/.bash_history') or "
                   "os.access('/root', os.R_OK | os.W_OK)")
    blocked = (r.value is None and r.error is not None
               and ("PermissionError" in r.error or "FileNotFoundError" in r.error)
               and r2.value == "False")
    expect_blocked(blocked, protected=_drops_uid(sb), detail=f"{r.render()} / {r2.render()}",
                   reason="local backend not running as root keeps the host uid, so the "
                          "user's own files stay readable (see protections())")


@pytest.fixture()
def world_readable_secret() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="agent-envs-secret-"))
    d.chmod(0o755)
    f = d / "secret.txt"
    f.write_text("TOP-SECRET-2")
    f.chmod(0o644)
    yield f
    f.unlink()
    d.rmdir()


def test_world_readable_host_files_are_not_mounted(sb, world_readable_secret):
    with sb.open() as s:
        r = s.run(f"open({str(world_readable_secret)!r}).read()")
        r2 = s.run(f"import os\nos.path.exists({str(PROJECT_FILE)!r}) or "
                   "os.path.exists('/root/.ssh')")
    blocked = r.value is None and "FileNotFoundError" in (r.error or "") and r2.value == "False"
    expect_blocked(blocked, protected=_has_jail(sb), detail=f"{r.render()} / {r2.render()}",
                   reason="local backend has no filesystem jail: world-readable host files "
                          "are readable (stated in protections().notes)")


def test_no_writes_to_system_or_project_dirs(sb):
    targets = ["/usr/agent_envs_pwned", "/etc/agent_envs_pwned",
               str(Path.cwd() / "agent_envs_pwned")]
    errors = []
    with sb.open() as s:
        for t in targets:
            errors.append(s.run(f"open({t!r}, 'w').write('x')").error)
    leaked = [t for t in targets if os.path.exists(t)]
    for t in leaked:
        os.unlink(t)
    expect_blocked(not leaked and all(errors), protected=_drops_uid(sb),
                   detail=f"wrote {leaked}; errors {errors}",
                   reason="local backend not running as root keeps the host uid and can "
                          "write wherever it can")


def test_no_writes_to_world_writable_host_dirs(sb):
    d = Path(tempfile.mkdtemp(prefix="agent-envs-ww-"))
    d.chmod(0o1777)
    try:
        with sb.open() as s:
            r = s.run(f"open({str(d / 'pwned')!r}, 'w').write('x')")
        wrote = (d / "pwned").exists()
        expect_blocked(not wrote and r.error is not None, protected=_has_jail(sb),
                       detail=r.render(),
                       reason="local backend has no filesystem jail: world-writable host "
                              "dirs such as /tmp are writable (stated in protections().notes)")
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def _tree_size(sb: Sandbox) -> int | None:
    """Live processes under the backend's host-side zygote process, if it has one."""
    zpid = getattr(sb, "zygote_pid", None)
    return len(descendants(zpid)) if zpid else None


def test_fork_bomb_is_contained(sb):
    time.sleep(0.3)  # let the zygote refill its spare sessions
    size_before = _tree_size(sb)
    s = sb.open()
    t0 = time.monotonic()
    r = s.run("import os\nwhile True:\n    os.fork()", timeout_s=3.0)
    assert r.error is not None or r.dead, r.render()
    assert time.monotonic() - t0 < 10
    # The host stays responsive while (or after) the bomb runs.
    t1 = time.monotonic()
    subprocess.run(["true"], check=True, timeout=10)
    assert time.monotonic() - t1 < 5
    s.close()
    if size_before is not None:
        assert wait_until(lambda: _tree_size(sb) <= size_before, 10), (
            f"fork bomb processes survived: {_tree_size(sb)} > {size_before} processes")
    with sb.open() as t:  # the backend still serves
        assert t.run("'ok'").value == "'ok'"


def test_memory_bomb_is_contained(sb):
    with sb.open() as s:
        r = s.run("chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))")
        assert r.dead or "MemoryError" in (r.error or ""), r.render()
        assert not r.timed_out
    with sb.open() as t:
        assert t.run("sum(range(10))").value == "45"


def test_infinite_loop_is_killed_on_time(sb):
    s = sb.open()
    r = s.run("import threading, time\n"
              "threading.Thread(target=lambda: [None for _ in iter(int, 1)]).start()\n"
              "while True: pass", timeout_s=1.0)
    assert r.timed_out and r.dead and 1.0 <= r.duration_s < 4.0
    pid = s.info.get("host_pid")
    if pid:
        assert wait_until(lambda: not pid_alive(pid))
    s.close()


def test_huge_output_is_truncated(sb):
    with sb.open() as s:
        t0 = time.monotonic()
        r = s.run("import sys, os\nsys.stdout.write('y' * 20_000_000)\n"
                  "os.write(2, b'z' * 5_000_000)\nNone")
        assert r.truncated and not r.dead
        assert len(r.stdout) + len(r.stderr) <= LIMITS.max_output_bytes + 200
        # The markers count what was left out exactly: 20M 'y's on stdout, 5M 'z's on stderr.
        out = re.search(r"\[\.\.\. (\d+) characters truncated \.\.\.\]", r.stdout)
        err = re.search(r"\[\.\.\. (\d+) characters truncated \.\.\.\]", r.stderr)
        assert out and err, (r.stdout[:200], r.stderr[:200])
        assert int(out.group(1)) + r.stdout.count("y") == 20_000_000
        assert int(err.group(1)) + r.stderr.count("z") == 5_000_000
        assert time.monotonic() - t0 < 10


def test_host_processes_are_invisible_and_unkillable(sb):
    me = os.getpid()
    with sb.open() as s:
        r = s.run(f"import os, signal\nseen = os.path.exists('/proc/{me}')\nres = []\n"
                  f"for sig in (0, signal.SIGCONT):\n"
                  f"    try:\n        os.kill({me}, sig)\n        res.append('sent')\n"
                  f"    except OSError as e:\n        res.append(type(e).__name__)\n"
                  f"seen, res, sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:5]")
        seen, res, visible = eval(r.value)
        assert not seen, "the host test process is visible in the session's /proc"
        assert "sent" not in res, f"the session could signal the host test process: {res}"
        assert me not in visible


def test_host_secret_env_vars_are_absent(sb):
    assert os.environ.get(SECRET_ENV)
    with sb.open() as s:
        r = s.run(f"import os\nos.environ.get({SECRET_ENV!r}), "
                  "any(b'hunter2' in open(f'/proc/{p}/environ', 'rb').read() "
                  "for p in os.listdir('/proc') if p.isdigit() "
                  "and os.access(f'/proc/{p}/environ', os.R_OK))")
        assert r.value == "(None, False)", r.render()


_FDS_AND_THREADS = """import os
def _sockets():
    out = []
    for f in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + f).startswith('socket:'):
                out.append(int(f))
        except OSError:
            pass
    return sorted(out)
def _threads():
    out = []
    for t in os.listdir('/proc/self/task'):
        with open(f'/proc/self/task/{t}/status') as f:
            st = dict(line.split(':', 1) for line in f)
        out.append((st['Uid'].split(), st['CapEff'].strip(), st['NoNewPrivs'].strip()))
    return out
_sockets(), _threads()"""


def test_sessions_hold_no_other_sessions_connection_and_no_privileged_thread(sb):
    # A burst of opens uses up the spares, so sessions are forked while connections are
    # being handed over; none may inherit another session's connection.
    sessions = [sb.open() for _ in range(5)]
    try:
        for s in sessions:
            r = s.run(_FDS_AND_THREADS)
            sockets, threads = eval(r.value)
            assert len(sockets) == 1, f"session {s.id} holds sockets {sockets}"
            assert len(threads) >= 2  # the cell runner and the output drainer
            for uids, cap_eff, nnp in threads:
                assert int(cap_eff, 16) == 0 and nnp == "1", threads
                if _drops_uid(sb):
                    assert "0" not in uids, threads
    finally:
        for s in sessions:
            s.close()
