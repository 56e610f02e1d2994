"""What a session costs in memory, and the parts of the zygote that keep it small."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandboxes import available_backends, make_sandbox
from sandboxes.zygote import SERVER_PATH
from tests.sandboxes.conftest import FAST, descendants, pid_alive, wait_until


def _pss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return total / 1024


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_the_zygote_does_not_import_threading():
    # threading's at-fork handler runs in every forked child and dirties a few hundred kB of
    # its copy-on-write pages; the server must not pull it in (the cell uses _thread).
    code = (f"import sys; sys.path.insert(0, {str(SERVER_PATH.parent)!r}); "
            "import _zygote_server; print('threading' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(os.geteuid() != 0, reason="the local backend's pids are host pids as root")
def test_sessions_come_from_the_fork_template_and_outlive_it():
    sb = make_sandbox("local", limits=FAST, spares=0)
    try:
        assert sb.features.get("fork_template") is True
        zygote = sb._client.ping()["pid"]
        template = sb._client.ping()["template"]
        assert template is not None and template != zygote and pid_alive(template)
        with sb.open() as s:
            assert s.run("x = 41").ok
            # Forked by the template's child, then re-parented to the zygote (a child
            # subreaper), which reaps it and reports how it ended.
            assert _ppid(s.pid) == zygote and s.pid not in descendants(template)
            os.kill(template, 9)
            assert wait_until(lambda: sb._client.ping()["template"] is None)
            assert s.run("x + 1").value == "42"  # open sessions do not depend on it
        with sb.open() as s2:  # the zygote forks sessions itself from now on
            assert s2.run("6 * 7").value == "42"
            assert _ppid(s2.pid) == zygote
            r = s2.run("import os; os._exit(3)")
            assert r.dead and "exited with code 3" in (r.error or ""), r
    finally:
        sb.close()


@pytest.mark.bwrap
def test_a_bubblewrap_session_costs_under_4_mb_pss():
    # 4.6 MB per session before the fork template, the rehearsal and the threading-free
    # zygote (issue 24); about 3.7 MB after, on this machine. Measured over 24 sessions that
    # each ran two cells, as the marginal PSS of the sandbox's process tree.
    reason = available_backends().get("bubblewrap")
    if reason is not None:
        pytest.skip(f"bubblewrap unavailable: {reason}")
    sb = make_sandbox("bubblewrap", limits=FAST)
    try:
        root = sb._proc.pid
        wait_until(lambda: len(descendants(root)) >= 6)
        base = _pss_mb(descendants(root) | {root})
        sessions = [sb.open() for _ in range(24)]
        for s in sessions:
            assert s.run("x = 1").ok
            assert s.run("x += 1\nx").value == "2"
        per_session = (_pss_mb(descendants(root) | {root}) - base) / len(sessions)
        for s in sessions:
            s.close()
        assert 0.5 < per_session < 4.0, f"{per_session:.2f} MB PSS per session"
    finally:
        sb.close()
