"""The docker backend against a real Docker engine (``.ci/docker-up.sh`` brings one up).

Every test here is marked ``docker`` and skips, with the reason, when the engine
or the image is not there; the unreachable-daemon test needs neither.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

docker = pytest.importorskip("docker", reason="the docker SDK is not installed "
                             "(pip install 'agent-envs[docker]')")

from sandboxes import Limits, SandboxError, SandboxUnavailable, SessionDead
from sandboxes.docker_backend import (
    DEFAULT_IMAGE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_RUN,
    LABEL_SANDBOX,
    DockerSandbox,
    reap_orphans,
)

pytestmark = pytest.mark.docker

_REASON = DockerSandbox.unavailable_reason()
needs_engine = pytest.mark.skipif(_REASON is not None, reason=f"docker backend unavailable: "
                                  f"{_REASON}")

LIMITS = Limits(timeout_s=10.0, memory_mb=512, max_procs=32)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    if _REASON is not None:
        pytest.skip(f"docker backend unavailable: {_REASON}")
    sb = DockerSandbox(limits=LIMITS, preimports=("numpy",))
    yield sb
    sb.close()


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    if _REASON is not None:
        pytest.skip(f"docker backend unavailable: {_REASON}")
    c = docker.from_env()
    yield c
    c.close()


def _gone(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


# -- notebook semantics -------------------------------------------------------------------------

def test_notebook_semantics_and_persistence(sandbox: DockerSandbox) -> None:
    with sandbox.open() as s:
        r = s.run("x = 41\nprint('hi')\nx + 1")
        assert (r.ok, r.stdout, r.value) == (True, "hi\n", "42")
        assert s.run("def f(n):\n    return n * x\n").value is None
        assert s.run("f(2)").value == "82"
        s.run("open('notes.txt', 'w').write('kept')")
        assert s.run("open('notes.txt').read()").value == "'kept'"
        r = s.run("1 / 0")
        assert not r.ok and r.error is not None and "ZeroDivisionError" in r.error
        assert s.alive and s.run("x").value == "41"  # an exception does not end the session


def test_numpy_preimported_inside_image(sandbox: DockerSandbox) -> None:
    with sandbox.open() as s:
        r = s.run("import numpy as np\nint(np.arange(10).sum())")
        assert r.ok and r.value == "45"


def test_sessions_are_separate(sandbox: DockerSandbox) -> None:
    with sandbox.open() as a, sandbox.open() as b:
        a.run("secret = 7")
        r = b.run("secret")
        assert r.error is not None and "NameError" in r.error
        assert a.run("import os; os.getcwd()").value != b.run("import os; os.getcwd()").value


async def test_async_run(sandbox: DockerSandbox) -> None:
    s = await sandbox.aopen()
    try:
        r = await s.arun("sum(range(5))")
        assert r.value == "10"
    finally:
        await s.aclose()


# -- limits -------------------------------------------------------------------------------------

def test_timeout_kills_process_group_and_reports_dead(sandbox: DockerSandbox) -> None:
    with sandbox.open() as s, sandbox.open() as observer:
        child = s.run("import subprocess\np = subprocess.Popen(['sleep', '1000'])\np.pid").value
        assert child is not None
        session_pid = s.pid
        t0 = time.monotonic()
        r = s.run("while True:\n    pass", timeout_s=1.0)
        took = time.monotonic() - t0
        assert r.timed_out and r.dead and not r.ok
        assert 0.9 < took < 5.0, took
        assert not s.alive
        with pytest.raises(SessionDead, match="open a new session"):
            s.run("1")
        # Both the session and the child it spawned are gone inside the container.
        probe = (f"import os, time\nfor _ in range(200):\n"
                 f"    left = [p for p in ({session_pid}, {child}) if os.path.exists(f'/proc/{{p}}')]\n"
                 f"    if not left: break\n    time.sleep(0.01)\nleft")
        assert observer.run(probe).value == "[]"


def test_container_cgroup_limits_follow_limits(client: docker.DockerClient) -> None:
    with DockerSandbox(limits=Limits(memory_mb=300, max_procs=10), sessions_per_container=2,
                       cpus=1.5) as sb:
        sb.open()
        hc = client.api.inspect_container(sb.container_ids[0])["HostConfig"]
    assert hc["Memory"] == (300 * 2 + 256) * 2**20
    assert hc["PidsLimit"] == 10 * 2 + 16
    assert hc["NanoCpus"] == 1_500_000_000


def test_more_sessions_than_capacity_start_another_container(client: docker.DockerClient) -> None:
    with DockerSandbox(limits=LIMITS, sessions_per_container=2) as sb:
        sessions = [sb.open() for _ in range(3)]
        assert len(sb.container_ids) == 2
        assert {s.info["container"] for s in sessions} == {c[:12] for c in sb.container_ids}
        sessions[0].close()
        sb.open()  # the freed slot is reused, no third container
        assert len(sb.container_ids) == 2
        assert sb.session_count() == 3


# -- isolation ----------------------------------------------------------------------------------

def test_no_network(sandbox: DockerSandbox, client: docker.DockerClient) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        with sandbox.open() as s:
            code = ("import socket\nerrs = []\n"
                    f"for host in ('127.0.0.1', '172.17.0.1', 'example.com'):\n"
                    "    try:\n"
                    f"        socket.create_connection((host, {port}), timeout=2).close()\n"
                    "        errs.append('connected')\n"
                    "    except OSError as e:\n"
                    "        errs.append(type(e).__name__)\n"
                    "errs, sorted(n for _, n in socket.if_nameindex())")
            r = s.run(code)
            assert r.ok, r.error
            results, interfaces = eval(r.value)
            assert "connected" not in results, results
            assert interfaces == ["lo"]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing reached the host's listener
            server.accept()
        hc = client.api.inspect_container(sandbox.container_ids[0])["HostConfig"]
        assert hc["NetworkMode"] == "none"
    finally:
        server.close()


def test_read_only_root_and_writable_scratch(sandbox: DockerSandbox) -> None:
    with sandbox.open() as s, sandbox.open() as other:
        code = ("import errno\ntry:\n    open('/etc/x', 'w')\n    out = 'wrote'\n"
                "except OSError as e:\n    out = errno.errorcode[e.errno]\nout")
        assert s.run(code).value == repr(errno.errorcode[errno.EROFS])
        assert "Error" in (s.run("open('/usr/evil', 'w')").error or "")
        if sandbox.features.get("scratch_quota"):  # /tmp: the session's own tmpfs
            assert s.run("open('/tmp/x', 'w').write('x')").value == "1"
            assert other.run("import os\nos.path.exists('/tmp/x')").value == "False"
        r = s.run("import os\nopen('data.bin', 'wb').write(b'x' * 1000)\n"
                  "os.path.getsize('data.bin'), os.getcwd().startswith('/tmp/scratch/')")
        assert r.value == "(1000, True)"


_STATUS = ("import os\nst = dict(l.split(':\\t') for l in open('/proc/self/status')"
           ".read().splitlines() if ':\\t' in l)\n"
           "os.getuid(), os.geteuid(), int(st['CapEff'], 16), int(st['CapPrm'], 16), "
           "int(st['CapBnd'], 16), st['NoNewPrivs'].strip()")
# Bits of CAP_CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, KILL 5, SETGID 6, SETUID 7, SYS_ADMIN 21:
# the zygote's set (SYS_ADMIN for the per-session namespaces, tmpfs and cgroup).
_ZYGOTE_CAPS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 21)


@pytest.mark.skipif(os.geteuid() != 0, reason="session_uids needs the test to run as root")
def test_sessions_have_own_uids_and_no_capabilities(sandbox: DockerSandbox) -> None:
    assert sandbox.session_uids
    with sandbox.open() as a, sandbox.open() as b:
        ua, _, eff, prm, bnd, nnp = eval(a.run(_STATUS).value)
        ub = eval(b.run(_STATUS).value)[0]
    assert ua != 0 and ub != 0 and ua != ub
    assert eff == 0 and prm == 0 and nnp == "1"
    assert bnd & ~_ZYGOTE_CAPS == 0  # docker dropped everything else


def test_shared_uid_mode_non_root_without_capabilities(client: docker.DockerClient) -> None:
    with DockerSandbox(limits=LIMITS, session_uids=False) as sb, sb.open() as s:
        uid, euid, eff, prm, bnd, nnp = eval(s.run(_STATUS).value)
        hc = client.api.inspect_container(sb.container_ids[0])["HostConfig"]
    assert uid != 0 and euid != 0
    assert eff == prm == bnd == 0 and nnp == "1"
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert hc["SecurityOpt"] == ["no-new-privileges"] and hc["ReadonlyRootfs"]


@pytest.mark.skipif(os.geteuid() != 0, reason="session_uids needs the test to run as root")
def test_a_session_cannot_harm_its_neighbours(sandbox: DockerSandbox) -> None:
    with sandbox.open() as victim, sandbox.open() as attacker:
        victim.run("x = 1")
        r = attacker.run("import os, signal\nos.kill(-1, signal.SIGKILL)")
        # It may kill itself; in its own PID namespace it finds nothing else to signal.
        assert r.dead or r.ok or "ProcessLookupError" in (r.error or "")
        assert victim.run("x + 1").value == "2"
        with sandbox.open() as attacker2:
            r = attacker2.run("import socket\nsocket.socket(socket.AF_UNIX)"
                              ".connect('/run/agent-envs/zygote.sock')")
            assert r.error is not None and "PermissionError" in r.error
            r = attacker2.run("import os\nos.listdir('/tmp/scratch/sessions')")
            assert r.error is not None and "PermissionError" in r.error


@needs_engine
def test_sandbox_recovers_when_a_session_kills_the_zygote() -> None:
    # With one shared uid a session can kill everything in its container; the sandbox
    # notices on the next open and starts a fresh container.
    with DockerSandbox(limits=LIMITS, session_uids=False) as sb:
        attacker, neighbour = sb.open(), sb.open()
        with pytest.raises(SandboxError, match="zygote"):  # it killed its own zygote too
            attacker.run("import os, signal\nos.kill(-1, signal.SIGKILL)")
        # The zygote is gone: an infrastructure fault for its sessions, not their code's.
        with pytest.raises(SandboxError, match="zygote"):
            neighbour.run("1")
        (old,) = sb.container_ids
        fresh = sb.open()
        assert fresh.run("6 * 7").value == "42" and sb.container_ids != [old]


def test_environment_scrubbed(sandbox: DockerSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ENVS_TEST_SECRET", "hunter2")
    with sandbox.open() as s:
        r = s.run("import os\nsorted(os.environ)")
    names = eval(r.value)
    assert "AGENT_ENVS_TEST_SECRET" not in names
    assert set(names) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONIOENCODING",
                          "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                          "BLIS_NUM_THREADS"}, names


def test_protections_report(sandbox: DockerSandbox) -> None:
    p = sandbox.protections()
    assert p.network_namespace and p.readonly_root and p.private_scratch and p.rlimits
    assert any("cap_drop=ALL" in n for n in p.notes)


# -- container lifecycle ------------------------------------------------------------------------

def test_labels_present(sandbox: DockerSandbox, client: docker.DockerClient) -> None:
    with sandbox.open():
        labels = client.containers.get(sandbox.container_ids[0]).labels
    assert labels[LABEL_SANDBOX] == "1"
    assert labels[LABEL_OWNER_PID] == str(os.getpid())
    assert labels[LABEL_OWNER_HOST] == socket.gethostname()
    assert labels[LABEL_RUN] == sandbox.run_id
    assert labels[LABEL_OWNER_START]


def test_close_removes_containers(client: docker.DockerClient) -> None:
    sb = DockerSandbox(limits=LIMITS, sessions_per_container=1)
    s1, s2 = sb.open(), sb.open()
    ids = sb.container_ids
    assert len(ids) == 2 and not any(_gone(client, i) for i in ids)
    sb.close()
    assert all(_gone(client, i) for i in ids)
    assert not s1.alive and not s2.alive
    sb.close()  # idempotent


def _labelled_container(client: docker.DockerClient, image: str, pid: int,
                        start: str) -> str:
    c = client.containers.create(
        image, ["sleep", "1000"], network_mode="none",
        labels={LABEL_SANDBOX: "1", LABEL_OWNER_PID: str(pid), LABEL_OWNER_START: start,
                LABEL_OWNER_HOST: socket.gethostname(), LABEL_RUN: "test-orphan"})
    c.start()
    return c.id


def test_orphans_of_dead_owners_are_reaped(client: docker.DockerClient) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    image = DEFAULT_IMAGE
    own_start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    orphan = _labelled_container(client, image, dead.pid, "")
    reused_pid = _labelled_container(client, image, os.getpid(), "1")  # same pid, other process
    live = _labelled_container(client, image, os.getpid(), own_start)
    try:
        with DockerSandbox(limits=LIMITS) as sb:
            assert orphan in sb.reaped and reused_pid in sb.reaped
        assert _gone(client, orphan) and _gone(client, reused_pid)
        assert not _gone(client, live)  # its owner (this process) is alive
        assert live not in reap_orphans(client)
    finally:
        for cid in (orphan, reused_pid, live):
            if not _gone(client, cid):
                client.api.remove_container(cid, force=True)


# -- unavailable --------------------------------------------------------------------------------

def test_unreachable_daemon_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", bogus)
    with pytest.raises(SandboxUnavailable, match=re.escape(f"cannot reach the Docker engine at "
                                                           f"{bogus!r}")) as info:
        DockerSandbox()
    assert "start dockerd" in str(info.value)
    assert DockerSandbox.unavailable_reason() is not None


def test_remote_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    with pytest.raises(SandboxUnavailable, match="bind mount"):
        DockerSandbox()


def test_missing_image_is_unavailable(client: docker.DockerClient) -> None:
    with pytest.raises(SandboxUnavailable, match=re.escape("build_image.sh no-such-image:0")):
        DockerSandbox(image="no-such-image:0")


def test_container_killed_from_outside(client: docker.DockerClient) -> None:
    with DockerSandbox(limits=LIMITS) as sb:
        s = sb.open()
        assert s.run("1 + 1").value == "2"
        (old,) = sb.container_ids
        client.containers.get(old).kill()
        # Its zygote is gone: an infrastructure fault (raised as SandboxError), not the code's.
        with pytest.raises(SandboxError, match="zygote"):
            s.run("1 + 1")
        fresh = sb.open()  # the dead container is retired and a new one started
        assert fresh.run("2 + 2").value == "4"
        assert sb.container_ids != [old] and _gone(client, old)


_CRASHING_OWNER = """
import os, sys
from sandboxes.docker_backend import DockerSandbox
sb = DockerSandbox()
sb.open()
print(sb.container_ids[0], flush=True)
os.kill(os.getpid(), 9) if sys.argv[1] == "kill" else None
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_owner_exit_or_crash_leaves_nothing(client: docker.DockerClient, how: str) -> None:
    out = subprocess.run([sys.executable, "-c", _CRASHING_OWNER, how], check=False,
                         capture_output=True, text=True, timeout=60)
    container_id = out.stdout.strip()
    assert container_id, out.stderr
    if how == "exit":  # the finalizer removed it at interpreter exit, without close()
        assert _gone(client, container_id)
    else:  # SIGKILL runs no cleanup: the next sandbox reaps it
        assert not _gone(client, container_id)
        with DockerSandbox(limits=LIMITS) as sb:
            assert container_id in sb.reaped
        assert _gone(client, container_id)


def test_missing_sdk_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # makes `import docker` raise ImportError
    with pytest.raises(SandboxUnavailable, match=re.escape("pip install 'agent-envs[docker]'")):
        DockerSandbox()
