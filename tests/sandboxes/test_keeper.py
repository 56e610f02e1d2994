"""The C keeper (sandboxes/keeper.c): built and cached, exec'd by each session's keeper after
the handover, relaying the same wire format as the Python keeper it replaces, and the
Python keeper as the fallback (no compiler, ``AGENT_ENVS_KEEPER=python``)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator

import pytest

from sandboxes import Limits, Sandbox, SandboxError, available_backends, make_sandbox
from sandboxes.keeper import build_keeper, cache_root, choose_keeper
from tests.sandboxes.conftest import FAST, backend_params, pid_alive, wait_until
from tests.sandboxes.test_attacks import (
    FIND_SEQ,
    MALFORMED,
    Episode,
    check_forged_frames_shift_nothing,
)

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0,
                               reason="reads another uid's /proc entries (root only)")


def _with_env(**env: str | None):
    """Set (or, with None, unset) environment variables; returns a function undoing it."""
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

    def undo() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return undo


@pytest.fixture(scope="module", params=["c", "python"])
def sb(request) -> Iterator[Sandbox]:
    """A local sandbox whose sessions use the C keeper, or the Python one."""
    undo = _with_env(AGENT_ENVS_KEEPER=request.param)
    try:
        sandbox = make_sandbox("local", limits=FAST)
    finally:
        undo()
    assert sandbox.keeper == request.param, sandbox.features
    yield sandbox
    sandbox.close()


def _ppid_state(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


# -- building it ---------------------------------------------------------------------------------

def test_the_build_is_cached_outside_the_checkout_by_source_and_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    binary, static = build_keeper()
    assert binary.is_relative_to(tmp_path / "cache" / "agent-envs" / "keeper")
    # Execute-only: see test_the_relay_is_not_dumpable_even_at_its_first_instruction.
    assert binary.name == "ae-keeper" and stat.S_IMODE(binary.stat().st_mode) == 0o111
    mtime = binary.stat().st_mtime_ns
    assert build_keeper() == (binary, static)  # cached: not built again
    assert binary.stat().st_mtime_ns == mtime
    assert not [p for p in binary.parent.iterdir() if p.name.startswith(".build-")]
    # Another compiler command is another binary (and another build).
    monkeypatch.setenv("CC", "cc -fno-inline")
    other, _ = build_keeper()
    assert other != binary and other.is_file()
    assert cache_root() == tmp_path / "cache" / "agent-envs" / "keeper"


def test_a_failing_compiler_falls_back_to_the_python_keeper(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.delenv("AGENT_ENVS_KEEPER", raising=False)
    choice = choose_keeper()
    assert choice.binary is None and "/bin/false" in choice.reason
    with make_sandbox("local", limits=FAST) as sb, sb.open() as s:
        assert sb.keeper == "python" and "/bin/false" in sb.features["keeper_error"]
        assert s.run("x = 41\nx + 1").value == "42"
        if sb.features.get("pid_ns"):
            assert "ae-keeper" not in s.run("open('/proc/1/comm').read()").value
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert "no C compiler" in choose_keeper().reason


def test_a_broken_cached_binary_is_built_again(tmp_path, monkeypatch):
    # A cache entry that does not run (truncated by a crash or a full disk, or replaced) is
    # not trusted because its name matches: it is probed, and built again.
    import sandboxes.keeper

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(sandboxes.keeper, "_built", {})
    binary, _ = build_keeper()
    binary.chmod(0o700)
    data = binary.read_bytes()
    for broken in (data[: len(data) // 2], b"", b"#!/bin/sh\nexit 1\n"):
        binary.chmod(0o700)
        binary.write_bytes(broken)
        binary.chmod(0o755)
        monkeypatch.setattr(sandboxes.keeper, "_built", {})  # as in a new process
        again, _ = build_keeper()
        assert again == binary
        assert subprocess.run([str(again), "--probe"], check=False).returncode == 0


def test_a_shell_meta_or_unbalanced_cc_is_a_clear_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", 'gcc "-O2')
    monkeypatch.delenv("AGENT_ENVS_KEEPER", raising=False)
    choice = choose_keeper()  # auto: the Python keeper, saying why
    assert choice.binary is None and "CC" in choice.reason and "gcc" in choice.reason, choice
    monkeypatch.setenv("AGENT_ENVS_KEEPER", "c")
    with pytest.raises(SandboxError, match="AGENT_ENVS_KEEPER=c.*CC"):
        choose_keeper()


def test_forcing_the_c_keeper_where_the_zygote_cannot_run_it_is_a_clear_error(monkeypatch):
    # AGENT_ENVS_KEEPER=c promises the C keeper or an error, also when the binary builds on
    # the host but the zygote cannot open or run it (here: a path it does not have).
    from sandboxes.zygote import ZygoteSandbox

    monkeypatch.setattr(ZygoteSandbox, "_keeper_inside", lambda self: "/nonexistent/ae-keeper")
    monkeypatch.setenv("AGENT_ENVS_KEEPER", "c")
    with pytest.raises(SandboxError, match="AGENT_ENVS_KEEPER=c.*/nonexistent/ae-keeper"):
        make_sandbox("local", limits=FAST)
    monkeypatch.delenv("AGENT_ENVS_KEEPER")  # auto: the Python keeper, saying why
    with make_sandbox("local", limits=FAST) as sandbox, sandbox.open() as s:
        assert sandbox.keeper == "python" and "/nonexistent" in sandbox.features["keeper_error"]
        assert s.run("6 * 7").value == "42"


@pytest.mark.docker
def test_the_docker_backend_falls_back_to_the_python_keeper(tmp_path, monkeypatch):
    # The image has no compiler and need not have one: the host builds the keeper (static,
    # bind-mounted); without one, sessions in the container use the Python keeper.
    reason = available_backends().get("docker")
    if reason is not None:
        pytest.skip(f"docker unavailable: {reason}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.delenv("AGENT_ENVS_KEEPER", raising=False)
    with make_sandbox("docker", limits=FAST) as sandbox, sandbox.open() as s:
        r = s.run("import os\nx = 6 * 7\nopen('/proc/1/comm').read().strip(), x")
        assert sandbox.features.get("keeper") == "python", sandbox.features
        assert "/bin/false" in sandbox.features.get("keeper_error", "")
        assert "ae-keeper" not in r.value and "42" in r.value, r.render()


def test_a_missing_source_falls_back_too(tmp_path, monkeypatch):
    import sandboxes.keeper

    monkeypatch.setattr(sandboxes.keeper, "SOURCE", tmp_path / "keeper.c")
    monkeypatch.delenv("AGENT_ENVS_KEEPER", raising=False)
    choice = choose_keeper()
    assert choice.binary is None and "cannot be read" in choice.reason


def test_forcing_the_c_keeper_without_a_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.setenv("AGENT_ENVS_KEEPER", "c")
    with pytest.raises(SandboxError, match="AGENT_ENVS_KEEPER=c, but the C keeper is not "
                                           "available.*/bin/false.*unset AGENT_ENVS_KEEPER"):
        make_sandbox("local", limits=FAST)


def test_a_bad_keeper_choice_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AGENT_ENVS_KEEPER", "cc")
    with pytest.raises(SandboxError, match="AGENT_ENVS_KEEPER='cc' is not one of auto, c, "
                                           "python .did you mean 'c'"):
        make_sandbox("local", limits=FAST)


# -- the keeper a session runs -------------------------------------------------------------------

@pytest.mark.parametrize("backend", backend_params())
def test_a_sessions_keeper_is_the_c_relay(backend):
    with make_sandbox(backend, limits=FAST) as sandbox, sandbox.open() as s:
        # (docker starts its first container, and so probes, at the first open)
        assert sandbox.features.get("keeper") == "c", sandbox.features
        if backend != "docker":  # its zygotes live in containers, each with a client
            assert sandbox._client.ping()["keeper"] == "c"
        if not sandbox.features.get("pid_ns"):
            pytest.skip("no PID namespace: the keeper is not PID 1 here")
        r = s.run("import os\nopen('/proc/1/comm').read().strip(), os.getppid()")
        assert r.value == "('ae-keeper', 1)", r.render()


@ROOT_ONLY
def test_the_relay_holds_only_its_two_sockets_and_the_cell_not_its_binary():
    with make_sandbox("local", limits=FAST) as sandbox, sandbox.open() as s:
        assert sandbox.keeper == "c" and s.run("1").ok  # the exec comes before any call
        keeper = s.pid
        assert os.readlink(f"/proc/{keeper}/exe") == str(sandbox._keeper.binary)
        fds = {int(fd): os.readlink(f"/proc/{keeper}/fd/{fd}")
               for fd in os.listdir(f"/proc/{keeper}/fd")}
        assert len(fds) == 2 and all(t.startswith("socket:") for t in fds.values()), fds
        # The cell does not hold the binary's fd (the zygote's O_PATH handle) nor any other
        # fd of the keeper's; it cannot list the keeper's fds either.
        r = s.run("import os\nseen = []\nfor fd in os.listdir('/proc/self/fd'):\n"
                  "    try:\n        seen.append(os.readlink(f'/proc/self/fd/{fd}'))\n"
                  "    except OSError:\n        pass\n"
                  "try:\n    os.listdir('/proc/1/fd')\n    mine = 'listed'\n"
                  "except OSError as e:\n    mine = e.errno\nseen, mine")
        seen, mine = eval(r.value)
        assert not any("ae-keeper" in t or "keeper" in t for t in seen), seen
        assert mine != "listed"


_EXEC_STOPPED = """
import ctypes, os, signal, sys
fd = os.open(sys.argv[1], os.O_PATH | os.O_CLOEXEC)
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = os.fork()
if pid == 0:
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        libc.ptrace(0, 0, None, None)  # PTRACE_TRACEME: stop at the exec
        os.execve(fd, ["ae-keeper", "--probe"], {})
    finally:
        os._exit(127)
_, status = os.waitpid(pid, 0)
try:
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP, status
    print(os.stat(f"/proc/{pid}/fd").st_uid)
finally:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


@ROOT_ONLY
def test_the_relay_is_not_dumpable_even_at_its_first_instruction(tmp_path, monkeypatch):
    # An exec makes a process dumpable again when its uid can read the file, until the relay's
    # first line (prctl) says otherwise: a window in which another process of the session's
    # uid that can see it may ptrace it or take its host connection (pidfd_getfd). The binary
    # is execute-only, so the kernel execs it not dumpable. Seen here as sessions run it (by
    # an O_PATH fd, as an unprivileged uid), stopped by ptrace at the exec, before its first
    # instruction: /proc/PID/ of a process that is not dumpable belongs to root.
    import sys

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    binary, _ = build_keeper()
    r = subprocess.run([sys.executable, "-c", _EXEC_STOPPED, str(binary)], capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0", "the relay was dumpable by its uid right after the exec"


@ROOT_ONLY
def test_the_c_keeper_costs_a_fraction_of_the_python_one():
    pss = {}
    for mode in ("c", "python"):
        undo = _with_env(AGENT_ENVS_KEEPER=mode)
        try:
            sandbox = make_sandbox("local", limits=FAST)
        finally:
            undo()
        with sandbox:
            sessions = [sandbox.open() for _ in range(6)]
            for s in sessions:
                assert s.run("x = 1").ok and s.run("x += 1\nx").value == "2"
            values = []
            for s in sessions:
                with open(f"/proc/{s.pid}/smaps_rollup") as f:
                    values.append(sum(int(line.split()[1]) for line in f
                                      if line.startswith("Pss:")))
            pss[mode] = sorted(values)[len(values) // 2]
            for s in sessions:
                s.close()
    # The C relay: a static binary's private pages (tens of kB); the CPython keeper ~1.6 MB.
    assert pss["c"] < 400 and pss["c"] * 4 < pss["python"], pss


# -- what both keepers do the same way -----------------------------------------------------------

def test_calls_state_and_large_frames_go_through(sb):
    with sb.open() as s:
        assert s.run("x = 'h\u00e9llo \u2713'\nprint(x)").stdout == "h\u00e9llo \u2713\n"
        big = "a" * 300_000  # streamed through the relay's one page
        assert s.run(f"y = '{big}'\nlen(y)").value == "300000"
    limits = Limits(timeout_s=5.0, cpu_s=20, memory_mb=1024, max_procs=32, max_file_mb=8,
                    max_output_bytes=200_000)
    sandbox_limits = sb.limits
    sb.limits = limits  # a result larger than a page (the relay maps a buffer for it)
    try:
        with sb.open() as s:
            r = s.run("print('y' * 150_000)")
            assert r.ok and len(r.stdout) == 150_001 and not r.truncated, r.render()[:200]
            r = s.run("print('z' * 500_000)")
            assert r.truncated and len(r.stdout) < 200_100
    finally:
        sb.limits = sandbox_limits


@pytest.mark.parametrize("max_output", [100_000.0, 2_000_000_000, 5_000_000_000],
                         ids=["float", "over-u32-quarter", "over-u32"])
def test_any_valid_max_output_goes_through_the_binary_headers(sb, max_output):
    # Limits takes any positive number; the headers carry 32-bit integers and the relay
    # takes at most 2**30 (its frame bound is 3x that): a float or a larger value is
    # clamped, never a struct.error from run() or a relay that refuses its argv.
    sandbox_limits = sb.limits
    sb.limits = Limits(timeout_s=5.0, cpu_s=20, memory_mb=1024, max_procs=32, max_file_mb=8,
                       max_output_bytes=max_output)
    try:
        with sb.open() as s:
            r = s.run("print('hi')\n6 * 7")
            assert r.ok and r.stdout == "hi\n" and r.value == "42", r.render()
            assert s.run("x = 1\nx").value == "1"
    finally:
        sb.limits = sandbox_limits


def test_how_the_cell_died_is_reported(sb):
    with sb.open() as s:
        r = s.run("import os; os._exit(3)")
        assert r.dead and "exited with code 3" in (r.error or ""), r
    with sb.open() as s:
        r = s.run("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
        assert r.dead and "segmentation fault" in (r.error or ""), r
    with sb.open() as s:  # a forked child still holds the cell's channel: no EOF there
        t0 = time.monotonic()
        r = s.run("import os, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\n"
                  "os._exit(4)")
        assert r.dead and "exited with code 4" in (r.error or ""), r
        assert time.monotonic() - t0 < 3.0
    with sb.open() as s:  # between calls: reported at the next call
        assert s.run("import os, _thread, time\n"
                     "_thread.start_new_thread(lambda: (time.sleep(0.2), os._exit(5)), ())").ok
        time.sleep(0.6)
        r = s.run("1")
        assert r.dead and "exited with code 5" in (r.error or ""), r


def test_forged_frames_never_shift_later_calls_with_either_keeper(sb):
    ep = Episode(sb)
    try:
        check_forged_frames_shift_nothing(ep)
    finally:
        ep.close()


@pytest.mark.parametrize("payload", ["struct.pack('>II', 0xFFFFFFF0, seq)",
                                     "frame(b'[1,2]', seq)"], ids=["oversized", "not-an-object"])
def test_malformed_frames_end_the_session_with_either_keeper(sb, payload):
    ep = Episode(sb)
    try:
        out, info = ep.cell(MALFORMED.replace("PAYLOAD", payload))
        assert info["infra_error"] is None and info["tool_outcome"]["ok"] is False
        assert "runner sent" in out and "result channel" in out, out
        out, info = ep.cell("print('fresh')")
        assert info["tool_outcome"]["ok"] and "fresh" in out
    finally:
        ep.close()


def test_a_result_within_the_keepers_bound_is_never_an_infra_error(sb):
    # With a large max_output the keeper lets through frames of up to 3 x max_output + 64 KiB,
    # more than the host's 64 MiB frame cap: what the cell sends there (here 68 MB of garbage
    # with this call's number) is the code's doing, an observation, never a SandboxError.
    sandbox_limits = sb.limits
    sb.limits = Limits(timeout_s=20.0, cpu_s=20, memory_mb=1024, max_procs=32, max_file_mb=8,
                       max_output_bytes=23_000_000)
    try:
        with sb.open() as s:
            r = s.run(FIND_SEQ + "import socket, stat\n"
                      "data = frame(b'x' * 68_000_000, seq)\n"
                      "for fd in range(3, 1100):\n"
                      "    try:\n"
                      "        if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
                      "            socket.socket(fileno=os.dup(fd)).sendall(data)\n"
                      "    except OSError:\n"
                      "        pass\n"
                      "import time; time.sleep(1)\n")
            assert r.dead and "runner sent" in (r.error or ""), r.render()[:300]
    finally:
        sb.limits = sandbox_limits


@ROOT_ONLY
def test_orphans_are_reaped(sb):
    if not sb.features.get("pid_ns"):
        pytest.skip("no PID namespace: orphans go to the host's init")
    with sb.open() as s:
        # A grandchild outlives its parent, so it is re-parented to the keeper (PID 1).
        code = ("import os, time\npid = os.fork()\nif pid == 0:\n    if os.fork() == 0:\n"
                "        time.sleep(0.3)\n    os._exit(0)\nos.waitpid(pid, 0)\n'ok'")
        for _ in range(3):
            assert s.run(code).value == "'ok'"
        keeper = s.pid

        def zombies() -> list[int]:
            out = []
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        ppid, state = _ppid_state(int(p))
                    except (OSError, IndexError):
                        continue
                    if ppid == keeper and state == "Z":
                        out.append(int(p))
            return out

        if sb.keeper == "c":  # reaped as they exit, between calls too
            time.sleep(0.8)
            assert zombies() == []
        assert s.run("1").ok  # the Python keeper reaps after each call
        assert wait_until(lambda: zombies() == [], 2.0)


@ROOT_ONLY
def test_the_c_relay_ends_the_session_when_the_host_hangs_up(sb):
    if sb.keeper != "c":
        pytest.skip("the Python keeper notices only when the running call ends")
    s = sb.open()
    keeper = s.pid
    s._sock.sendall(s._request("import time\ntime.sleep(30)"))
    time.sleep(0.2)
    s._sock.shutdown(socket.SHUT_RDWR)  # the host goes away without a kill
    assert wait_until(lambda: not pid_alive(keeper), 3.0)
    s._dead_reason = "hung up"  # the test's doing
    s.close()


# -- the relay alone (driven directly: this test plays the host and holds the cell's channel) --

_START_RELAY = """
import os, sys
conn, chan, binary = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cell = os.fork()
if cell == 0:
    os._exit(7)  # the cell dies before the relay has started
os.waitid(os.P_PID, cell, os.WEXITED | os.WNOWAIT)  # exited, not reaped: the relay's to read
os.execv(binary, ["ae-keeper", str(conn), str(chan), str(cell), "4096"])
"""


def test_a_cell_that_died_before_the_relay_started_is_reported_at_the_first_call():
    # Its SIGCHLD came before the relay had a handler (and was discarded): the relay looks
    # for exited children once it has one, so a channel still open elsewhere (here: held by
    # this test; in a session, by a process the cell forked) does not leave it waiting.
    import struct
    import sys

    binary, _ = build_keeper()
    host, conn = socket.socketpair()
    cellside, chan = socket.socketpair()
    relay = subprocess.Popen([sys.executable, "-c", _START_RELAY, str(conn.fileno()),
                              str(chan.fileno()), str(binary)],
                             pass_fds=(conn.fileno(), chan.fileno()))
    conn.close()
    chan.close()
    try:
        host.settimeout(5.0)
        host.sendall(struct.pack(">II", 1, 0) + b"1")
        n, kind = struct.unpack(">II", host.recv(8, socket.MSG_WAITALL))
        report = host.recv(n, socket.MSG_WAITALL)
        assert kind == 1 and b'"exit_code": 7' in report, report
        assert relay.wait(timeout=5.0) == 0
    finally:
        relay.kill()
        relay.wait()
        host.close()
        cellside.close()


def test_code_longer_than_a_call_carries_is_a_clear_error_and_keeps_the_session(sb) -> None:
    """Before: code over the keeper's 64 MiB request cap ended the session with 'the session
    process exited with code 0'. Now it is refused before sending, the session unchanged."""
    import asyncio

    from sandboxes._zygote_client import MAX_REQUEST

    with sb.open() as s:
        s.run("x = 41")
        big = "#" + "é" * (MAX_REQUEST // 2)  # 2 bytes a character: one byte over the cap
        for r in (s.run(big), asyncio.run(s.arun(big))):
            assert not r.ok and not r.dead
            assert r.error == (f"ValueError: the code is {MAX_REQUEST + 1:,} bytes; a call takes "
                               f"at most {MAX_REQUEST:,} bytes of code (nothing ran; the session "
                               "is unchanged)")
        assert s.run("x + 1").value == "42"
        fits = "x\n#" + "a" * (MAX_REQUEST - 3)  # exactly the cap: it is sent and runs
        assert len(fits.encode()) == MAX_REQUEST
        assert s.run(fits).ok
