"""The bubblewrap backend: a jailed zygote with the same session semantics as ``local``."""

from __future__ import annotations

import re
import shutil

import pytest

from sandboxes import SandboxUnavailable, available_backends, make_sandbox
from sandboxes.bubblewrap import BubblewrapSandbox
from tests.sandboxes.conftest import FAST, descendants, wait_until

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap unavailable: bwrap is not on PATH")
pytestmark = [pytest.mark.bwrap]


def test_missing_bwrap_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no bwrap on it
    with pytest.raises(SandboxUnavailable, match=re.escape(
            "install the 'bubblewrap' package (e.g. apt-get install -y bubblewrap)")):
        make_sandbox("bubblewrap")
    assert "bubblewrap" in available_backends()["bubblewrap"]


@needs_bwrap
def test_notebook_session_inside_the_jail():
    with make_sandbox("bubblewrap", limits=FAST, preimports=("json",)) as sb:
        assert isinstance(sb, BubblewrapSandbox)
        with sb.open() as s:
            s.run("import json, os\nd = {'a': [1, 2]}")
            r = s.run("print(os.getcwd())\njson.dumps(d)")
            assert r.value == "'{\"a\": [1, 2]}'"
            assert r.stdout.startswith("/tmp/scratch/")
            r = s.run("sorted(os.listdir('/'))")
            top = eval(r.value)
            assert "home" not in top and "sandbox" in top  # no host home; the socket dir
            r = s.run("open('/usr/x', 'w')")
            assert "Read-only file system" in r.error
            assert s.run("while True: pass", timeout_s=0.5).timed_out
        p = sb.protections()
        assert p.readonly_root and p.mount_namespace and p.network_namespace
        assert any("bubblewrap jail" in n for n in p.notes)


@needs_bwrap
def test_close_leaves_no_processes():
    sb = make_sandbox("bubblewrap", limits=FAST)
    root = sb.zygote_pid
    sessions = [sb.open() for _ in range(3)]
    sessions[0].run("import subprocess\nsubprocess.Popen(['sleep', '60'])")
    pids = descendants(root) | {root}
    assert len(pids) >= 6  # bwrap, its init, the zygote, 3 sessions, sleep, spares
    sb.close()

    def gone() -> bool:
        return not any(_alive(p) for p in pids)

    assert wait_until(gone, 10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_bwrap
def test_another_venvs_interpreter_runs_as_that_venv(tmp_path):
    # Before: the path was resolved to the base interpreter and the venv was not mounted, so
    # sessions ran without the venv's packages.
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "only_in_that_venv.py").write_text("MARK = 'from the venv'\n")
    # Preimported: a venv under /tmp is out of the sessions' sight (their /tmp is private).
    with make_sandbox("bubblewrap", limits=FAST, python=str(venv / "bin" / "python"),
                      preimports=("only_in_that_venv",)) as sb, sb.open() as s:
        assert s.run("import sys; sys.prefix").value == repr(str(venv))
        assert s.run("import only_in_that_venv; only_in_that_venv.MARK").value == \
            "'from the venv'"


@pytest.mark.parametrize("backend", [
    "local", pytest.param("bubblewrap", marks=[pytest.mark.bwrap, needs_bwrap])])
def test_a_venv_under_tmp_stays_visible_read_only_to_sessions(tmp_path, backend):
    # Before: a session's private /tmp hid a checkout's venv under /tmp, so
    # subprocess.Popen([sys.executable, ...]) raised FileNotFoundError and imports after the
    # fork failed (a fresh clone under /tmp failed the CPU-share tests this way).
    import subprocess
    import sys

    venv = tmp_path / "venv"
    assert str(venv).startswith("/tmp/")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "only_in_that_venv.py").write_text("MARK = 'imported after the fork'\n")
    (tmp_path / "beside_the_venv.txt").write_text("not for sessions")
    with make_sandbox(backend, limits=FAST, python=str(venv / "bin" / "python")) as sb, \
            sb.open() as s:
        r = s.run("import subprocess, sys\n"
                  "subprocess.run([sys.executable, '-c', 'print(6 * 7)'],"
                  " capture_output=True, check=True).stdout")
        assert r.value == "b'42\\n'", r.render()
        r = s.run("import only_in_that_venv; only_in_that_venv.MARK")
        assert r.value == "'imported after the fork'", r.render()
        r = s.run(f"open({str(site / 'planted.py')!r}, 'w')")
        assert r.error is not None and "Read-only file system" in r.error, r.render()
        r = s.run(f"import os; os.path.exists({str(tmp_path / 'beside_the_venv.txt')!r})")
        assert r.value == "False", r.render()
