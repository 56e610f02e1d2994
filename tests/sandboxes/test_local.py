"""Functional tests of the local zygote backend: notebook semantics, state, limits, lifecycle."""

from __future__ import annotations

import asyncio
import os
import re
import threading

import pytest

from sandboxes import (
    Limits,
    SandboxError,
    SessionDead,
    UnknownBackend,
    available_backends,
    make_sandbox,
)
from tests.sandboxes.conftest import FAST, descendants, pid_alive, wait_until


def test_last_expression_value_like_a_notebook(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("a = 6\nb = 7\na * b")
        assert (r.value, r.stdout, r.error, r.ok) == ("42", "", None, True)
        assert s.run("x = 1").value is None  # an assignment has no value
        assert s.run("None").value is None
        assert s.run("print('hi')").value is None  # print returns None: only stdout
        assert s.run("print('hi')").stdout == "hi\n"
        assert s.run("'a' + 'b'").value == "'ab'"  # repr, not str
        assert s.run("[1, 2]\n{'k': (3,)}").value == "{'k': (3,)}"  # only the last expression
        assert s.run("_").value == "{'k': (3,)}"  # `_` holds the last value, as in IPython


def test_stdout_and_stderr_are_separate(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n5")
        assert (r.stdout, r.stderr, r.value) == ("out\n", "err\n", "5")
        assert r.render() == "out\nerr\n5"


def test_fd_level_output_of_subprocesses_is_captured(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("import os, subprocess\nos.write(1, b'raw\\n')\n"
                  "subprocess.run(['sh', '-c', 'echo from-child; echo oops >&2'])\nNone")
        assert r.error is None, r.error
        assert "raw\n" in r.stdout and "from-child\n" in r.stdout
        assert r.stderr == "oops\n"


def test_exception_gives_the_traceback_tail_and_keeps_the_session(local_sandbox):
    with local_sandbox.open() as s:
        s.run("def f(n):\n    return 1 / n")
        r = s.run("print('before')\nf(0)")
        assert r.stdout == "before\n"
        assert r.error is not None and r.error.endswith("ZeroDivisionError: division by zero")
        assert "in f" in r.error and "return 1 / n" in r.error  # the cell's source is shown
        assert "_zygote_server" not in r.error  # the server's own frames are hidden
        assert not r.dead and not r.ok
        assert s.run("f(4)").value == "0.25"


def test_deep_traceback_is_cut_to_its_last_lines(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("def g(n):\n    return g(n - 1) if n else 1 / 0\ng(50)")
        lines = r.error.splitlines()
        assert len(lines) <= 12 and lines[1] == "  ..."
        assert lines[-1] == "ZeroDivisionError: division by zero"


def test_syntax_error_is_reported_with_a_caret(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("x = 1\ndef f(:\n    pass")
        assert r.error.splitlines()[0] == '  File "<cell-1>", line 2'
        assert "^" in r.error and r.error.rstrip().endswith("SyntaxError: invalid syntax")
        assert "Traceback" not in r.error
        assert s.run("x").error is not None  # nothing of the bad cell ran


def test_state_persists_and_sessions_are_independent(local_sandbox):
    with local_sandbox.open() as a, local_sandbox.open() as b:
        a.run("import math\nv = [1]")
        a.run("v.append(2)")
        b.run("v = 'other'")
        assert a.run("v, math.pi > 3").value == "([1, 2], True)"
        assert b.run("v").value == "'other'"
        assert a.id != b.id


def test_scratch_dir_is_cwd_and_home_and_is_deleted_on_close(local_sandbox):
    s = local_sandbox.open()
    s.run("open('f.txt', 'w').write('data')")
    r = s.run("import os\nos.getcwd(), os.environ['HOME'], sorted(os.listdir('.'))")
    cwd, home, files = eval(r.value)
    assert cwd == home == s.info["scratch"] and files == ["f.txt"]
    # With a mount namespace the scratch dir lives on the session's private tmpfs, which the
    # host does not see and the kernel frees with the namespace; without one it is a host dir.
    assert os.path.isdir(cwd) != bool(local_sandbox.features.get("scratch_quota"))
    s.close()
    assert wait_until(lambda: not os.path.exists(cwd)), f"scratch dir {cwd} survived close()"


def test_environment_is_scrubbed(local_sandbox, monkeypatch):
    with local_sandbox.open() as s:
        env = eval(s.run("import os\ndict(os.environ)").value)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONIOENCODING",
                        "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                        "BLIS_NUM_THREADS"}
    assert env["OMP_NUM_THREADS"] == "1"


def test_timeout_kills_the_session_and_later_runs_raise(local_sandbox):
    s = local_sandbox.open()
    pid = s.info["pid"]
    r = s.run("import time\nwhile True: time.sleep(0.01)", timeout_s=0.5)
    assert r.timed_out and r.dead and not r.ok
    assert 0.5 <= r.duration_s < 3.0
    assert "timed out" in r.render()
    assert not s.alive
    with pytest.raises(SessionDead, match=re.escape(f"session {s.id} is dead")):
        s.run("1")
    assert wait_until(lambda: not pid_alive(pid)), "timed-out session process still alive"
    s.close()
    with local_sandbox.open() as t:  # the sandbox itself is fine
        assert t.run("2 + 2").value == "4"


def test_timeout_holds_against_ignored_signals_and_busy_c_code(local_sandbox):
    s = local_sandbox.open()
    r = s.run("import signal\nfor sig in (signal.SIGTERM, signal.SIGINT):\n"
              "    signal.signal(sig, signal.SIG_IGN)\n"
              "import re\nre.match('(a+)+$', 'a' * 40 + 'b')", timeout_s=0.5)
    assert r.timed_out and r.dead and r.duration_s < 3.0
    assert wait_until(lambda: not pid_alive(s.info["pid"]))
    s.close()


def test_exit_and_crash_kill_only_the_session(local_sandbox):
    zygote_pid = local_sandbox.zygote_pid
    for code, reason in (("import os\nos._exit(3)", "exited with code 3"),
                         ("import ctypes\nctypes.string_at(0)", "segmentation fault")):
        s = local_sandbox.open()
        r = s.run(code)
        assert r.dead and not r.timed_out and reason in r.error, r.error
        with pytest.raises(SessionDead):
            s.run("1")
        s.close()
        assert pid_alive(zygote_pid)
    with local_sandbox.open() as s:
        assert s.run("'still serving'").value == "'still serving'"


def test_system_exit_is_an_error_not_a_death(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("raise SystemExit(2)")
        assert r.error.endswith("SystemExit: 2") and not r.dead
        assert s.run("1").value == "1"


def test_output_is_truncated_head_and_tail(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("for i in range(100000):\n    print(f'line {i}')")
        assert r.truncated
        assert r.stdout.startswith("line 0\n") and r.stdout.endswith("line 99999\n")
        m = re.search(r"\[\.\.\. (\d+) characters truncated \.\.\.\]", r.stdout)
        total = sum(len(f"line {i}\n") for i in range(100000))
        assert m is not None
        kept = len(r.stdout) - len(m.group(0)) - 2
        assert int(m.group(1)) + kept == total
        (cut,) = r.truncations
        assert (cut.part, cut.omitted) == ("stdout", int(m.group(1)))
        assert r.stdout[cut.start:cut.start + cut.length] == f"\n{m.group(0)}\n"
        assert len(r.stdout.encode()) <= FAST.max_output_bytes + 64
        r = s.run("'x' * 100000")
        assert r.truncated and len(r.value) <= FAST.max_output_bytes + 64


def test_cpu_limit_kills_the_session():
    with make_sandbox("local", limits=Limits(cpu_s=1, timeout_s=20)) as sb, sb.open() as s:
        r = s.run("while True: pass")
        assert r.dead and not r.timed_out and "CPU time limit" in r.error, r.error
        assert r.duration_s < 15  # CPU seconds, so slower in wall time on a busy machine


def test_memory_limit_raises_memory_error(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("x = bytearray(4 * 1024**3)")
        assert r.error is not None and r.error.endswith("MemoryError"), r.error
        assert s.run("len(bytearray(10 * 1024**2))").value == str(10 * 1024**2)


def test_file_size_limit(local_sandbox):
    with local_sandbox.open() as s:
        r = s.run("import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                  "f = open('big', 'wb')\nf.write(b'x' * (16 * 1024**2))")
        assert r.error is not None and "File too large" in r.error, r.error


def test_close_kills_the_process_tree_and_is_idempotent(local_sandbox):
    s = local_sandbox.open()
    s.run("import subprocess\np = subprocess.Popen(['sleep', '60'])")
    tree = descendants(s.info["pid"]) | {s.info["pid"]}
    assert len(tree) >= 2  # the session and its sleep
    s.close()
    s.close()
    assert wait_until(lambda: not any(pid_alive(p) for p in tree))
    with pytest.raises(SessionDead, match="was closed"):
        s.run("1")


def test_sandbox_close_leaves_no_processes():
    sb = make_sandbox("local", limits=FAST)
    zpid = sb.zygote_pid
    sessions = [sb.open() for _ in range(3)]
    sessions[0].run("import subprocess\nsubprocess.Popen(['sleep', '60'])")
    pids = descendants(zpid) | {zpid}
    assert len(pids) >= 5
    sb.close()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids))
    with pytest.raises(SandboxError, match=re.escape("this local sandbox is closed")):
        sb.open()


def test_many_sessions_from_threads(local_sandbox):
    errors: list[BaseException] = []
    results: dict[int, str | None] = {}

    def work(i: int) -> None:
        try:
            with local_sandbox.open() as s:
                s.run(f"n = {i}")
                results[i] = s.run("n * n").value
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {i: str(i * i) for i in range(16)}


async def test_arun_runs_sessions_concurrently(local_sandbox):
    sessions = [local_sandbox.open() for _ in range(4)]
    try:
        t0 = asyncio.get_running_loop().time()
        rs = await asyncio.gather(*(s.arun(f"import time\ntime.sleep(0.3)\n{i}")
                                    for i, s in enumerate(sessions)))
        elapsed = asyncio.get_running_loop().time() - t0
        assert [r.value for r in rs] == ["0", "1", "2", "3"]
        assert elapsed < 1.0  # not serialised: 4 x 0.3 s would be 1.2 s
        r = await sessions[0].arun("while True: pass", timeout_s=0.3)
        assert r.timed_out and r.dead
    finally:
        for s in sessions:
            await s.aclose()


async def test_cancelled_arun_kills_the_session(local_sandbox):
    s = local_sandbox.open()
    task = asyncio.ensure_future(s.arun("import time\ntime.sleep(30)"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not s.alive
    assert wait_until(lambda: not pid_alive(s.info["pid"]))
    with pytest.raises(SessionDead, match="cancelled"):
        await s.arun("1")
    s.close()


def test_unknown_backend_suggests_a_name():
    with pytest.raises(UnknownBackend, match=re.escape("unknown sandbox backend 'lokal'; "
                                                       "did you mean 'local'?")):
        make_sandbox("lokal")
    assert available_backends()["local"] is None


def test_bad_preimport_is_a_clear_error():
    with pytest.raises(SandboxError, match=re.escape("preimport 'no_such_module_xyz' failed")):
        make_sandbox("local", preimports=("no_such_module_xyz",))


def test_preimported_module_is_warm(tmp_path):
    with make_sandbox("local", preimports=("json",), limits=FAST) as sb, sb.open() as s:
        assert s.run("import sys\n'json' in sys.modules").value == "True"


def test_local_protections_are_reported(local_sandbox):
    p = local_sandbox.protections()
    assert p.rlimits and p.scrubbed_env and p.private_scratch and p.process_group_kill
    jailed = bool(local_sandbox.features.get("ro_root"))
    assert p.readonly_root == jailed
    assert any(("filesystem jail" if jailed else "no filesystem jail") in n for n in p.notes)
    if os.geteuid() == 0:
        assert any("own unprivileged uid" in n for n in p.notes)


def test_each_session_is_pid_1_of_its_own_namespace(local_sandbox):
    if not local_sandbox.features.get("pid_ns"):
        pytest.skip("no PID namespaces here")
    for _ in range(4):  # spares, and sessions forked after them, each in a fresh namespace
        with local_sandbox.open() as s:
            r = s.run("import os\nos.getpid(), sorted(int(p) for p in os.listdir('/proc') "
                      "if p.isdigit())")
            # PID 1 is the session's keeper (it alone holds the host connection), 2 the cell.
            assert r.value == "(2, [1, 2])", r.render()


def test_session_setup_failure_is_a_clear_error_and_the_sandbox_recovers(tmp_path):
    # Without spares every open forks a fresh session process, which makes its scratch dir
    # before it reports in; take the scratch root away and that fails.
    with make_sandbox("local", limits=FAST, spares=0) as sb:
        if sb.features.get("scratch_quota"):
            # The scratch dir is made on the session's own tmpfs: break the delegated cgroup
            # dirs instead, which the zygote needs before it forks.
            if sb.features.get("cgroup") is None:
                pytest.skip("no host dir a session setup depends on here")
            dirs = sb._cgroups.dirs
            for d in dirs:
                os.rmdir(d)
            with pytest.raises(SandboxError, match="could not start a session"):
                sb.open()
            for d in dirs:
                os.mkdir(d)
        else:
            root = sb._workdir / "scratch"
            root.rename(tmp_path / "moved")
            with pytest.raises(SandboxError, match="session setup failed: FileNotFoundError"):
                sb.open()
            (tmp_path / "moved").rename(root)
        with sb.open() as s:
            assert s.run("6 * 7").value == "42"


def test_sessions_start_when_run_from_inside_the_checkout(tmp_path, monkeypatch):
    """The current directory is hidden from sessions; inside the (also hidden) checkout it must
    not be mounted over a second time (sessions then failed to start at all)."""
    from pathlib import Path

    from sandboxes import make_sandbox
    from sandboxes.local import hidden_trees

    inner = Path(__file__).resolve().parent  # tests/sandboxes, inside the checkout
    monkeypatch.chdir(inner)
    trees = hidden_trees()
    assert str(inner) not in trees and str(inner.parents[1]) in trees
    with make_sandbox("local") as sb, sb.open() as s:
        assert s.run("print(6 * 7)").stdout == "42\n"
        seen = s.run(f"import os; print(os.listdir({str(inner)!r}) if os.path.exists("
                     f"{str(inner)!r}) else 'hidden')").stdout.strip()
        assert seen in ("hidden", "[]")
