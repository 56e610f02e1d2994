"""The per-session CPU share (issue 18): a process a cell leaves burning a core cannot starve
other sessions' calls.

Each session has a cpu cgroup (where the host delegates one); the host raises its weight to
the kernel default for each call and drops it to the minimum between calls. Checked on every
available backend: the weight really switches, background processes really sit in the
session's cgroup, and a call's latency stays within 2x of idle with more burning sessions
than cores. ``benchmarks/sandbox_cpu_share.py`` measures it against ``cpu_share=False``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

from sandboxes import Limits, available_backends, make_sandbox
from tests.sandboxes.conftest import backend_params, wait_until

LIMITS = Limits(timeout_s=30.0, cpu_s=300, max_procs=16)
BURN = ("import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "'burning'")


def _sandbox(name: str, **kw):
    if name != "docker":
        kw.setdefault("spares", 1)
    sb = make_sandbox(name, limits=LIMITS, **kw)
    sb.open().close()  # docker probes the kernel in its first container
    return sb


@pytest.fixture(scope="module", params=backend_params())
def sandbox(request):
    sb = _sandbox(request.param)
    if sb.cpu_share is None:
        sb.close()
        pytest.skip(f"no CPU share on {request.param} here: {sb.cpu_reason}")
    yield sb
    sb.close()


def _weight(s) -> int:
    with open(s.cpu_weight) as f:
        return int(f.read())


def test_the_weight_is_the_default_during_a_call_and_the_minimum_between(sandbox):
    share = sandbox.cpu_share
    with sandbox.open() as s:
        assert s.cpu_weight is not None and s.cpu_weight.startswith(share.parent)
        assert _weight(s) == share.idle  # opened: idle until its first call
        seen: list[int] = []
        t = threading.Thread(target=lambda: s.run("import time\ntime.sleep(1.5)"))
        t.start()
        assert wait_until(lambda: _weight(s) == share.active, 5)
        seen.append(_weight(s))
        t.join()
        assert seen == [share.active] and _weight(s) == share.idle
        s.run("1 / 0")  # a call that raises is a call like any other
        assert _weight(s) == share.idle


def test_background_processes_stay_in_the_sessions_cgroup(sandbox):
    with sandbox.open() as s:
        procs = os.path.join(os.path.dirname(s.cpu_weight), "cgroup.procs")

        def members() -> set[int]:
            with open(procs) as f:
                return {int(x) for x in f.read().split()}

        before = members()
        assert before  # the keeper and the cell
        r = s.run("import subprocess\np = subprocess.Popen(['sleep', '60'])\np.pid > 0")
        assert r.value == "True", r.render()
        assert wait_until(lambda: len(members()) == len(before) + 1, 5)
        weight_dir = os.path.dirname(s.cpu_weight)
    assert wait_until(lambda: not os.path.exists(weight_dir), 10)  # removed with the session


def test_burners_in_other_sessions_do_not_starve_a_call(sandbox):
    """More burning sessions than cores; the tester's call stays within 2x of idle."""
    burners = 2 * (os.cpu_count() or 1) + 1
    loops = 100_000
    code = f"s = 0\nfor i in range({loops}):\n    s += i\ns > 0"
    with sandbox.open() as tester:
        def timed(n: int) -> float:
            out = []
            for _ in range(n):
                r = tester.run(code)
                assert r.value == "True", r.render()
                out.append(r.duration_s)
            return statistics.median(out)

        timed(2)
        idle = timed(7)
        hogs = [sandbox.open() for _ in range(burners)]
        try:
            for h in hogs:
                assert h.run(BURN).value == "'burning'"
            time.sleep(0.3)
            loaded = timed(7)
        finally:
            for h in hogs:
                h.close()
        idle = (idle + timed(7)) / 2  # before and after: the host's other load moves both
    assert loaded < 2.0 * idle, (f"{burners} burning sessions slowed a call from "
                                 f"{idle * 1000:.1f} ms to {loaded * 1000:.1f} ms")


@pytest.mark.parametrize("name", backend_params())
def test_protections_report_whether_the_share_is_enforced(name):
    on = _sandbox(name)
    try:
        p = on.protections()
        assert p.cpu_share == (on.cpu_share is not None)
        if p.cpu_share:
            assert any(n.startswith("CPU share per session") for n in p.notes)
        else:
            assert any(n.startswith("NO CPU share per session") and on.cpu_reason in n
                       for n in p.notes)
    finally:
        on.close()
    off = _sandbox(name, cpu_share=False)
    try:
        p = off.protections()
        assert not p.cpu_share and off.cpu_share is None
        assert any("NO CPU share per session" in n for n in p.notes), p.notes
        with off.open() as s:
            assert s.cpu_weight is None and s.run("1 + 1").value == "2"
    finally:
        off.close()


@pytest.mark.docker
def test_docker_cpus_caps_each_session_where_sessions_have_their_own_cgroup():
    """Session cgroups live under the sandbox's delegated cgroup, not the container's: the
    container's CPU quota (``cpus``) goes on each session instead."""
    if available_backends()["docker"] is not None:
        pytest.skip(f"docker unavailable: {available_backends()['docker']}")
    with make_sandbox("docker", limits=LIMITS, cpus=0.5) as sb, sb.open() as s:
        if sb.cpu_share is None:
            pytest.skip(f"no CPU share here: {sb.cpu_reason}")
        d = os.path.dirname(s.cpu_weight)
        files = os.listdir(d)
        if "cpu.max" in files:
            with open(os.path.join(d, "cpu.max")) as f:
                assert f.read().split() == ["50000", "100000"]
        else:
            with open(os.path.join(d, "cpu.cfs_quota_us")) as f:
                assert int(f.read()) == 50_000
        assert s.run("6 * 7").value == "42"


def test_list_protections_reports_the_share_per_backend(capsys):
    from agent_envs.cli import main

    assert main(["list", "--protections"]) == 0
    out = capsys.readouterr().out
    for name, problem in available_backends().items():
        if problem is not None:
            continue
        block = out.split(f"\n{name}: ", 1)[1].split("\n\n", 1)[0]
        active = block.split("active: ", 1)[1].split(";", 1)[0].split(", ")
        enforced = "cpu_share" in active
        assert ("\n  - CPU share per session" in block) == enforced, block
        assert ("\n  - NO CPU share per session" in block) != enforced, block
