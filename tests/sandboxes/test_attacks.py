"""Issue 14: the attacks that got through, replayed on every backend this machine has.

Each test drives an attack (through ``env.step`` where the issue did) and asserts that it is
blocked, or, where ``protections()`` says the kernel cannot block it, that it is flagged: an
infra error, never an exception out of ``step`` and never blamed on a neighbour. Every test
then checks that a session opened *before* the attack (a concurrent neighbour) and the next
episode still work without an infra error. Sizes are small (a 256 MiB memory limit, a 64 MiB
scratch quota) but still exceed the limits they probe.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent_envs
from agent_envs.harmony import get_codec, message_text
from sandboxes import Limits, Sandbox, SandboxError, make_sandbox
from sandboxes._zygote_client import ZygoteSession
from sandboxes._zygote_server import remove_tree
from sandboxes.hostres import UidBlock
from sandboxes.local import LocalSandbox
from sandboxes.registry import IsolationWarning
from tests.sandboxes.conftest import backend_params, wait_until

ATTACK = Limits(timeout_s=5.0, cpu_s=30, memory_mb=256, max_procs=32, max_file_mb=128,
                max_output_bytes=4096, scratch_mb=64)
MB = 1024 * 1024


@pytest.fixture(scope="module", params=backend_params())
def sb(request) -> Iterator[Sandbox]:
    kwargs = {"sessions_per_container": 8} if request.param == "docker" else {}
    sandbox = make_sandbox(request.param, limits=ATTACK, **kwargs)
    yield sandbox
    sandbox.close()


# -- helpers --------------------------------------------------------------------------------------

class Episode:
    """A python-tool episode on ``sb``: ``cell(code)`` is one ``env.step`` with a python call."""

    def __init__(self, sandbox: Sandbox, call_timeout_s: float = ATTACK.timeout_s) -> None:
        self.env = agent_envs.make("python-tool", sandbox_instance=sandbox,
                                   call_timeout_s=call_timeout_s)
        self.env.reset(seed=1)

    def cell(self, code: str) -> tuple[str, dict]:
        obs, _, term, trunc, info = self.env.step(
            f"<|channel|>analysis to=python code<|message|>{code}<|call|>")
        if term or trunc:  # an infra error truncates the episode: no tool message follows
            return "", info
        return message_text(get_codec().parse_conversation(obs)[-1]), info

    def close(self) -> None:
        self.env.close()


def run_ok(session, code: str) -> str | None:
    r = session.run(code)
    assert r.ok, r.render()
    return r.value


def assert_neighbours_fine(sandbox: Sandbox, bystander) -> None:
    """The session opened before the attack kept its state; a fresh episode works."""
    assert run_ok(bystander, "state + 1") == "42"
    ep = Episode(sandbox)
    try:
        out, info = ep.cell("print(6 * 7)")
        assert info["infra_error"] is None, info["infra_error"]
        assert info["tool_outcome"]["ok"] and "42" in out
    finally:
        ep.close()


@pytest.fixture
def bystander(sb):
    s = sb.open()
    run_ok(s, "state = 41")
    yield s
    s.close()


def features(sandbox: Sandbox) -> dict:
    return dict(getattr(sandbox, "features", {}) or {})


def notes(sandbox: Sandbox) -> str:
    return " | ".join(sandbox.protections().notes)


def cgroup_dirs(sandbox: Sandbox) -> list[str]:
    cg = getattr(sandbox, "_cgroups", None)
    return list(cg.dirs) if cg is not None else []


# -- the zygote cannot be killed or stalled -------------------------------------------------------

DEEP_CHAIN = """
import os
os.makedirs('deep', exist_ok=True)
os.chdir('deep')
for i in range(1500):
    os.mkdir('d')
    os.chdir('d')
len(os.getcwd())
"""


def test_deep_directory_chain_does_not_kill_the_zygote(sb, bystander):
    ep = Episode(sb)
    out, info = ep.cell(DEEP_CHAIN)
    assert info["tool_outcome"]["ok"] and int(out) > 3000, out
    ep.close()  # the episode ends: its scratch dir goes
    ep2 = Episode(sb)
    try:
        _, info2 = ep2.cell("1")
        assert info2["infra_error"] is None, info2["infra_error"]
    finally:
        ep2.close()
    assert_neighbours_fine(sb, bystander)


def test_remove_tree_is_iterative_and_bounded(tmp_path):
    path = tmp_path / "deep"
    cur = os.open(tmp_path, os.O_RDONLY)
    os.mkdir("deep", dir_fd=cur)
    fd = os.open("deep", os.O_RDONLY, dir_fd=cur)
    os.close(cur)
    for _ in range(1500):  # deeper than the default recursion limit and than PATH_MAX
        os.mkdir("dddd", dir_fd=fd)
        nxt = os.open("dddd", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    t0 = time.monotonic()
    assert remove_tree(str(path), budget_s=10.0)
    assert not path.exists() and time.monotonic() - t0 < 10.0
    # Bounded: a big flat dir with a tiny budget is left unfinished, not waited on.
    big = tmp_path / "big"
    big.mkdir()
    for i in range(5000):
        (big / str(i)).touch()
    t0 = time.monotonic()
    assert not remove_tree(str(big), budget_s=0.005)  # gives up, leaving some behind
    assert time.monotonic() - t0 < 0.5 and big.exists()
    assert remove_tree(str(big))


def test_hard_links_hit_the_inode_quota_and_do_not_stall_neighbours(sb, bystander):
    s = sb.open()
    code = ("import os\nopen('f', 'w').close()\nn = 0\ntry:\n"
            "    for n in range(200_000):\n        os.link('f', f'l{n}')\n"
            "except OSError as e:\n    err = e.errno\nelse:\n    err = None\nn, err")
    r = s.run(code)
    if features(sb).get("scratch_quota"):
        n, err = eval(r.value)
        assert err == errno.ENOSPC and n < 200_000, r.render()
    else:
        assert "NO scratch quota" in notes(sb)
    s.close()  # cleanup of what it made must not hold up anyone
    t0 = time.monotonic()
    r = bystander.run("state + 1", timeout_s=0.5)
    assert r.value == "42" and time.monotonic() - t0 < 0.5 + 0.2
    t0 = time.monotonic()
    with sb.open() as fresh:
        assert fresh.run("1 + 1").value == "2"
    assert time.monotonic() - t0 < 2.0
    assert_neighbours_fine(sb, bystander)


@pytest.mark.parametrize("name", [p for p in backend_params() if p.values[0] != "docker"])
def test_zygote_death_is_an_infra_error_and_the_next_open_gets_a_fresh_one(name):
    # (docker: tests/sandboxes/test_docker_backend.py kills the container's zygote and the
    # container; the sessions get infra errors and the next open a fresh container.)
    sandbox = make_sandbox(name, limits=ATTACK)
    try:
        s = sandbox.open()
        run_ok(s, "x = 1")
        old = sandbox.zygote_pid
        os.killpg(old, signal.SIGKILL)  # the zygote (and, for bubblewrap, its jail)
        wait_until(lambda: sandbox._proc.poll() is not None, 5.0)
        try:
            r = s.run("x")
        except SandboxError as e:  # hosted sessions: an infra error, never the code's
            assert "zygote" in str(e)
        else:  # local sessions outlive their zygote: then they simply keep working
            assert r.value == "1", r.render()
        with sandbox.open() as fresh:
            assert fresh.run("6 * 7").value == "42"
        assert sandbox.zygote_pid != old and sandbox.restarts == 1
        s.close()  # never raises, whatever state the session is in
    finally:
        sandbox.close()
    sandbox.close()  # idempotent, never raises


# -- memory is per session ------------------------------------------------------------------------

FORKED_CHILDREN = """
import os, time
pids = []
for i in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            block = b'x' * (120 * 1024 * 1024)
            time.sleep(1.5)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    pids.append(pid)
codes = []
for pid in pids:
    _, st = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(st))
codes
"""


def test_forked_children_share_the_session_memory_limit(sb, bystander):
    ep = Episode(sb)
    try:
        out, info = ep.cell(FORKED_CHILDREN)
        assert info["infra_error"] is None
        if features(sb).get("cgroup"):
            # 3 x 120 MiB do not fit in 256 MiB: the cgroup OOM-kills (or the session dies).
            dead = info["tool_outcome"]["error"] == "the python session died"
            assert dead or eval(out).count(0) < 3, out
        else:
            assert "NO per-session cgroup" in notes(sb)
    finally:
        ep.close()
    assert_neighbours_fine(sb, bystander)


MEMFDS = """
import os
made = 0
try:
    for i in range(6):
        fd = os.memfd_create(f'm{i}')
        os.write(fd, b'x' * (64 * 1024 * 1024))
        made += 1
except OSError as e:
    print('refused', e.errno)
made
"""


def test_memfds_count_against_the_session(sb, bystander):
    ep = Episode(sb)
    try:
        out, info = ep.cell(MEMFDS)
        assert info["infra_error"] is None
        if features(sb).get("cgroup"):
            dead = info["tool_outcome"]["error"] == "the python session died"
            assert dead or "refused" in out or int(out.split()[-1]) < 6, out
        else:
            assert "NO per-session cgroup" in notes(sb)
    finally:
        ep.close()
    assert_neighbours_fine(sb, bystander)


SHM = """
import ctypes, ctypes.util
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
ids = []
for key in KEYS:
    shmid = libc.shmget(key, SIZE, 0o1666)
    if shmid < 0:
        raise OSError(ctypes.get_errno(), 'shmget')
    addr = libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), 'shmat')
    ctypes.memset(addr, 1, SIZE)
    libc.shmdt(ctypes.c_void_p(addr))
    ids.append(shmid)
ids
"""


SHM_CHILDREN = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
size = 100 * 1024 * 1024
codes = []
for key in (1, 2, 3):
    pid = os.fork()
    if pid == 0:
        shmid = libc.shmget(key, size, 0o1666)
        addr = libc.shmat(shmid, None, 0) if shmid >= 0 else None
        if addr in (None, ctypes.c_void_p(-1).value):
            os._exit(3)
        ctypes.memset(addr, 1, size)
        libc.shmdt(ctypes.c_void_p(addr))
        os._exit(0)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
codes
"""


def _host_shm_keys() -> set[int]:
    with open("/proc/sysvipc/shm") as f:
        next(f)
        return {int(line.split()[0]) for line in f if line.strip()}


def test_sysv_shm_is_private_counted_and_gone_with_the_session(sb, bystander):
    key = 0x5EED0000 + (os.getpid() & 0xFFFF)
    s = sb.open()
    r = s.run(SHM.replace("KEYS", f"[{key}]").replace("SIZE", str(8 * MB)))
    assert r.ok, r.render()
    if features(sb).get("ipc_ns"):
        assert key not in _host_shm_keys()  # not in the host's IPC namespace
        with sb.open() as other:  # nor in a neighbour's
            probe = other.run(f"import ctypes\nctypes.CDLL(None).shmget({key}, 0, 0)")
            assert probe.value == "-1", probe.render()
    else:
        assert "NO IPC namespace" in notes(sb)
    if features(sb).get("cgroup"):
        # 3 x 100 MiB of shm, each filled by its own process (so no RLIMIT_AS is hit), then
        # detached: the segments stay, charged to the session's memory cgroup (256 MiB).
        big = s.run(SHM_CHILDREN)
        assert big.dead or (big.ok and eval(big.value).count(0) < 3), big.render()
    s.close()
    with sb.open() as later:  # a later session never sees it
        probe = later.run(f"import ctypes\nctypes.CDLL(None).shmget({key}, 0, 0)")
        assert probe.value == "-1", probe.render()
    assert_neighbours_fine(sb, bystander)


# -- scratch quota --------------------------------------------------------------------------------

def test_scratch_has_a_quota_shared_by_tmp_and_dev_shm(sb, bystander):
    ep = Episode(sb)
    try:
        code = ("import os\nwritten = 0\ntry:\n"
                "    for path in ('big1', '/tmp/big2', '/dev/shm/big3'):\n"
                "        with open(path, 'wb') as f:\n"
                "            for _ in range(40):\n"
                "                f.write(b'x' * (1024 * 1024))\n"
                "                written += 1\n"
                "except OSError as e:\n    print('errno', e.errno)\nwritten")
        out, info = ep.cell(code)
        assert info["infra_error"] is None
        if features(sb).get("scratch_quota"):
            assert f"errno {errno.ENOSPC}" in out and int(out.split()[-1]) <= 64, out
        else:
            assert "NO scratch quota" in notes(sb)
        # A neighbour still has its whole quota: nothing is blamed on it.
        assert run_ok(bystander, "open('n.bin', 'wb').write(b'y' * (8 * 1024 * 1024))") \
            == str(8 * MB)
    finally:
        ep.close()
    assert_neighbours_fine(sb, bystander)


def test_files_do_not_persist_into_the_next_episode(sb, bystander):
    tag = uuid.uuid4().hex
    paths = ["/tmp", "/dev/shm", "/var/tmp", "/tmp/scratch", "/tmp/ray"]
    ep = Episode(sb)
    code = ("import os\nmade = []\n"
            f"for d in {paths!r}:\n"
            "    try:\n"
            "        os.makedirs(d, exist_ok=True)\n"
            f"        open(os.path.join(d, 'persist-{tag}'), 'w').write('x')\n"
            "        made.append(d)\n"
            "    except OSError:\n        pass\nmade")
    out, info = ep.cell(code)
    assert info["tool_outcome"]["ok"], out
    ep.close()
    ep2 = Episode(sb)
    try:
        out2, _ = ep2.cell(f"import os\n[d for d in {paths!r} "
                           f"if os.path.exists(os.path.join(d, 'persist-{tag}'))]")
        assert out2.strip() == "[]", out2
    finally:
        ep2.close()
    for d in paths:  # and nothing reached the host
        assert not os.path.exists(os.path.join(d, f"persist-{tag}"))
    assert_neighbours_fine(sb, bystander)


# -- the result channel ---------------------------------------------------------------------------

# The cell's current call number, as the model's code can read it from its own memory.
FIND_SEQ = """
import json, os, struct, sys
seq = None
f = sys._getframe()
while f is not None:
    if f.f_code.co_name == '_cell_main':
        seq = f.f_locals.get('seq')
    f = f.f_back
assert isinstance(seq, int) and seq > 0, seq
def frame(obj, n):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack('>II', len(data), n) + data
"""

FORGE = FIND_SEQ + """
forged = {'stdout': 'FORGED', 'stderr': '', 'value': None, 'error': None, 'truncated': False}
hits = []
for fd in range(3, 1100):
    try:
        # Another call's number (a stale one, a far one, 0), then this call's.
        os.write(fd, frame(forged, seq - 1) + frame(forged, seq + 1000) + frame(forged, 0)
                 + frame(forged, seq))
        hits.append(fd)
    except OSError:
        pass
import time; time.sleep(0.2)
print('real output', hits)
"""


def test_forged_frames_never_shift_later_calls(sb, bystander):
    ep = Episode(sb)
    try:
        out, _ = ep.cell("import os\nos.write(1000, b'\\x00\\x00\\x00\\x02{}')")
        assert "Bad file descriptor" in out  # the host connection is not in the cell
        check_forged_frames_shift_nothing(ep)
    finally:
        ep.close()
    assert_neighbours_fine(sb, bystander)


def check_forged_frames_shift_nothing(ep: Episode) -> None:
    """The forged frame with this call's number may stand in for its output (the code could
    print that too); the others are dropped, so is the real result, as stale, and every later
    call is its own."""
    out, info = ep.cell(FORGE)
    assert info["infra_error"] is None and info["tool_outcome"]["ok"], (out, info)
    for i in range(3):
        out, info = ep.cell(f"print('call', {i})")
        assert info["infra_error"] is None and f"call {i}" in out and "FORGED" not in out


MALFORMED = FIND_SEQ + """
import stat
for fd in range(3, 1100):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.write(fd, PAYLOAD)
    except OSError:
        pass
import time; time.sleep(0.5)
"""


GARBAGE = {  # what the code writes to its channel, with this call's number
    "oversized": "struct.pack('>II', 0xFFFFFFF0, seq)",
    "not-an-object": "frame(b'[1,2]', seq)",
    "undecodable": "frame(b'\\xff{[\\x00', seq)",
    "bad-field": "frame({'stdout': 7}, seq)",
    "bad-truncation": "frame({'stdout': 'x', 'truncations': {'stdout': [0, 9, 1]}}, seq)",
    # JSON nested past the host's recursion limit: json.loads raises RecursionError there.
    "deeply-nested": "frame(b'[' * 20000, seq)",
}


@pytest.mark.parametrize("payload", list(GARBAGE.values()), ids=list(GARBAGE))
def test_malformed_frames_are_an_observation_never_an_exception(sb, bystander, payload):
    ep = Episode(sb)
    try:
        out, info = ep.cell(MALFORMED.replace("PAYLOAD", payload))
        # The cell's only channel goes to its keeper (which bounds the size) and on to the
        # host (which checks the rest): the garbage is the code's doing, the session dies
        # (the model sees why), step() does not raise.
        outcome = info["tool_outcome"]
        assert info["infra_error"] is None
        assert outcome["ok"] is False and "session died" in (outcome["error"] or ""), outcome
        assert "malformed" in out or "runner sent" in out, out
        out, info = ep.cell("print('fresh')")
        assert info["tool_outcome"]["ok"] and "fresh" in out
    finally:
        ep.close()
    assert_neighbours_fine(sb, bystander)


def test_malformed_frames_on_the_host_connection_are_infra_errors():
    # Only the keeper writes there, and sets each reply's kind; a reply that is not a
    # cell's result (kind 0) nor the keeper's report (kind 1) is an infra error.
    from sandboxes._zygote_client import ZygoteClient

    def reply(kind: int, data: bytes) -> bytes:
        return struct.pack(">II", len(data), kind) + data

    for payload in (struct.pack(">II", 1 << 31, 0), reply(1, b"[1,2]"), reply(1, b"\xff\xfe{"),
                    reply(1, b'{"died": 7}'), reply(7, b'{"stdout": ""}'),
                    reply(1, b"[" * 20000)):
        host, fake = socket.socketpair()
        s = ZygoteSession(ZygoteClient("/nonexistent.sock"), host, "fake", Limits(timeout_s=2),
                          {"backend": "test"})
        fake.sendall(payload)
        with pytest.raises(SandboxError, match="session fake"):
            s.run("1")
        assert not s.alive
        s.close()
        fake.close()


def test_a_malformed_result_on_the_host_connection_is_the_codes_doing():
    # Kind 0 is what the cell sent, forwarded unchanged: the host checks it, and garbage
    # there ends the session with the malformed wording, as an observation.
    from sandboxes._zygote_client import ZygoteClient

    for data in (b"[1,2]", b"\xff{", b'{"stdout": 7}', b'{"truncated": "yes"}', b"[" * 20000,
                 b'{"stdout": ' + b"[" * 20000):
        host, fake = socket.socketpair()
        s = ZygoteSession(ZygoteClient("/nonexistent.sock"), host, "fake", Limits(timeout_s=2),
                          {"backend": "test"})
        fake.sendall(struct.pack(">II", len(data), 0) + data)
        r = s.run("1")
        assert r.dead and "runner sent" in (r.error or "") and "result channel" in r.error, r
        assert not s.alive
        s.close()
        fake.close()


def test_the_keeper_is_out_of_the_cells_reach(sb, bystander):
    if not features(sb).get("pid_ns"):
        pytest.skip("no PID namespace: the keeper is not the session's init here")
    with sb.open() as s:
        r = s.run("import os\nkeeper = os.getppid()\nout = []\n"
                  "for what in (f'/proc/{keeper}/fd', f'/proc/{keeper}/mem'):\n"
                  "    try:\n        open(what, 'rb') if what.endswith('mem') else "
                  "os.listdir(what)\n        out.append('open')\n"
                  "    except OSError as e:\n        out.append(e.errno)\nkeeper, out")
        keeper, out = eval(r.value)
        assert keeper == 1 and "open" not in out, r.render()
    assert_neighbours_fine(sb, bystander)


# -- sessions are isolated from each other --------------------------------------------------------

def test_sessions_cannot_reach_each_other_over_the_network(sb, bystander):
    port = 20000 + os.getpid() % 20000
    with sb.open() as a, sb.open() as b:
        listen = ("import socket\nsrv = []\n"
                  "for fam, addr in ((socket.AF_INET, ('127.0.0.1', PORT)), "
                  "(socket.AF_UNIX, '\\0agent-envs-probe')):\n"
                  "    try:\n        s = socket.socket(fam)\n        s.bind(addr)\n"
                  "        s.listen()\n        srv.append(s)\n    except OSError as e:\n"
                  "        srv.append(e.errno)\nlen(srv)").replace("PORT", str(port))
        assert a.run(listen).value == "2"
        r = b.run("import socket\nout = []\n"
                  f"for fam, addr in ((socket.AF_INET, ('127.0.0.1', {port})), "
                  "(socket.AF_UNIX, '\\0agent-envs-probe')):\n"
                  "    try:\n        socket.socket(fam).connect(addr)\n"
                  "        out.append('connected')\n"
                  "    except OSError as e:\n        out.append(e.errno)\nout")
        if features(sb).get("net_ns"):
            assert "connected" not in r.value, r.render()
        else:
            assert "NO network isolation" in notes(sb)
    assert_neighbours_fine(sb, bystander)


def test_host_unix_sockets_checkout_and_homes_are_out_of_reach(sb, bystander, tmp_path):
    sock_dir = Path("/tmp") / f"agent-envs-hostsock-{uuid.uuid4().hex[:8]}"
    sock_dir.mkdir(mode=0o777)
    os.chmod(sock_dir, 0o777)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(sock_dir / "s"))
    os.chmod(sock_dir / "s", 0o777)
    srv.listen()
    repo = Path(agent_envs.__file__).resolve().parents[1]
    try:
        with sb.open() as s:
            r = s.run("import os, socket\nc = socket.socket(socket.AF_UNIX)\ntry:\n"
                      f"    c.connect({str(sock_dir / 's')!r})\n    hit = 'connected'\n"
                      "except OSError as e:\n    hit = e.errno\n"
                      f"hit, os.path.exists({str(repo / 'README.md')!r}), "
                      "os.path.isdir('/home') and os.listdir('/home'), "
                      "os.path.exists('/run/docker.sock')")
            hit, readme, homes, docker_sock = eval(r.value)
            if features(sb).get("ro_root") or sb.name in ("bubblewrap", "docker"):
                assert hit != "connected" and not readme and not homes and not docker_sock, \
                    r.render()
            else:
                assert "no filesystem jail" in notes(sb)
    finally:
        srv.close()
        remove_tree(str(sock_dir))
    assert_neighbours_fine(sb, bystander)


def test_etc_is_readable_and_names_resolve(sb):
    with sb.open() as s:
        r = s.run("import pwd, socket\npwd.getpwuid(0).pw_name, "
                  "socket.gethostbyname('localhost')")
        assert r.value == "('root', '127.0.0.1')", r.render()


# -- killing a session kills everything it started ------------------------------------------------

SETSID_CHILD = ("import subprocess\nfor _ in range(4):\n"
                "    subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                "'spawned'")


def test_setsid_children_die_with_the_session(sb, bystander):
    dirs = cgroup_dirs(sb)
    for episode in range(10):  # 40 sleepers: more than the pids limit (32) if they leaked
        ep = Episode(sb, call_timeout_s=1.0)
        try:
            out, info = ep.cell(SETSID_CHILD)
            assert info["tool_outcome"]["ok"], out
            if episode == 1:  # and on timeout, not only on close
                _, info = ep.cell("while True: pass")
                assert info["tool_outcome"]["timed_out"]
            sid = ep.env._session.id if ep.env._session is not None else None
        finally:
            ep.close()
        if dirs and sid is not None:
            # The session's cgroup can only be removed once nothing of it is left.
            assert wait_until(lambda d=dirs, i=sid: not any(os.path.exists(os.path.join(x, i))
                                                            for x in d), 5.0)
    if not dirs and not features(sb).get("pid_ns"):
        assert "setsid" in notes(sb)
    with sb.open() as s:  # a fresh session can still fork as much as its limit allows
        assert run_ok(s, "import subprocess\n[subprocess.run(['true']).returncode "
                         "for _ in range(16)].count(0)") == "16"
    assert_neighbours_fine(sb, bystander)


# -- uids are unique per host; keyrings are per session --------------------------------------------

def test_uid_blocks_are_unique_across_processes(tmp_path):
    a = UidBlock.acquire(str(tmp_path))
    b = UidBlock.acquire(str(tmp_path))
    code = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom sandboxes.hostres import UidBlock"
            "\nb = UidBlock.acquire(sys.argv[2])\nprint(b.base)")
    repo = str(Path(__file__).resolve().parents[2])
    other = int(subprocess.run([sys.executable, "-c", code, repo, str(tmp_path)],
                               capture_output=True, text=True, check=True).stdout)
    assert len({a.base, b.base, other}) == 3
    ranges = sorted((x, x + a.count) for x in (a.base, b.base, other))
    assert all(r1[1] <= r2[0] for r1, r2 in itertools.pairwise(ranges))
    a.release()
    again = UidBlock.acquire(str(tmp_path))  # a released block is handed out again
    assert again.base == a.base
    again.release()
    b.release()


def test_two_sandboxes_hand_out_different_uids(sb):
    if os.geteuid() != 0:
        pytest.skip("session uids are only assigned when running as root")
    kwargs = {"sessions_per_container": 2} if sb.name == "docker" else {}
    with make_sandbox(sb.name, limits=ATTACK, **kwargs) as other, sb.open() as a, \
            other.open() as b:
        ua = int(run_ok(a, "import os\nos.getuid()"))
        ub = int(run_ok(b, "import os\nos.getuid()"))
        assert ua != ub
        # RLIMIT_NPROC is per uid: b's forks do not count against a's limit.
        assert run_ok(a, "import subprocess\nsubprocess.run(['true']).returncode") == "0"


KEYCTL = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
SYS_add_key, SYS_keyctl = 248, 250
def add(desc, ring):
    r = libc.syscall(SYS_add_key, b'user', desc, b'secret', 6, ring)
    return r if r >= 0 else -ctypes.get_errno()
def search(desc, ring):
    r = libc.syscall(SYS_keyctl, 10, ring, b'user', desc, 0)
    return r if r >= 0 else -ctypes.get_errno()
"""


def test_keys_do_not_cross_sessions(sb, bystander):
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers in this test are for x86_64")
    desc = f"agent-envs-{uuid.uuid4().hex[:8]}".encode()
    with sb.open() as a:
        added = int(run_ok(a, KEYCTL + f"add({desc!r}, -4)"))  # the uid's user keyring
    with sb.open() as b:
        found = int(run_ok(b, KEYCTL + f"search({desc!r}, -4)"))
        found_s = int(run_ok(b, KEYCTL + f"search({desc!r}, -3)"))  # its session keyring
    if added < 0:  # keyctl filtered (docker's seccomp profile): blocked outright
        assert -added in (errno.EPERM, errno.ENOSYS, errno.EACCES)
    assert found < 0 and found_s < 0
    assert_neighbours_fine(sb, bystander)


# -- the safe default -----------------------------------------------------------------------------

def test_auto_is_the_default_and_picks_the_most_isolated_backend():
    from agent_envs.envs.python_tool.env import PythonToolConfig
    from sandboxes import available_backends

    assert PythonToolConfig().sandbox == "auto"
    avail = available_backends()
    want = next(n for n in ("bubblewrap", "docker", "local") if avail.get(n) is None)
    with make_sandbox("auto", limits=ATTACK) as sandbox:
        assert sandbox.name == want
        with sandbox.open() as s:
            assert s.run("1 + 1").value == "2"


def test_auto_falls_back_to_local_with_one_warning(monkeypatch):
    import sandboxes.registry as reg

    monkeypatch.setattr(reg, "_BACKENDS", {**reg._BACKENDS,
                                           "bubblewrap": "no_such_pkg.bwrap:Nope",
                                           "docker": "no_such_pkg.docker:Nope"})
    with pytest.warns(IsolationWarning, match="fell back to 'local'.*not isolated here") as rec:
        sandbox = make_sandbox("auto", limits=ATTACK)
    try:
        assert sandbox.name == "local" and len(rec) == 1
        assert "bubblewrap unavailable" in str(rec[0].message)
    finally:
        sandbox.close()


def test_protections_report_what_was_measured(sb):
    p = sb.protections()
    f = features(sb)
    text = notes(sb)
    assert p.pid_namespace == bool(f.get("pid_ns")) or sb.name == "docker"
    assert ("IPC namespace per session" in text) == bool(f.get("ipc_ns"))
    assert ("cgroup v" in text) == bool(f.get("cgroup"))
    assert ("scratch quota: " in text) == bool(f.get("scratch_quota"))
    json.dumps(f)  # plain data, reported by the zygote's probes


def test_nothing_outlives_the_sandbox(sb):
    # A fresh sandbox of this backend: its cgroups and uid block go with close(), and the
    # cgroup dirs of an owner that was killed are reaped by the next sandbox.
    kwargs = {"sessions_per_container": 2} if sb.name == "docker" else {}
    other = make_sandbox(sb.name, limits=ATTACK, **kwargs)
    with other.open() as s:
        run_ok(s, "open('/tmp/x', 'w').write('x')")
    dirs = cgroup_dirs(other)
    other.close()
    assert not any(os.path.exists(d) for d in dirs)


def test_stale_cgroup_dirs_of_dead_owners_are_reaped(tmp_path):
    from sandboxes.hostres import reap_stale

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"agent-envs-{dead.pid}-0123abcd"
    (stale / "session1").mkdir(parents=True)
    live = tmp_path / f"agent-envs-{os.getpid()}-0123abcd"
    live.mkdir()
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    assert reap_stale(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and unrelated.exists()


class _NoNamespaces(LocalSandbox):
    """A local sandbox whose zygote skips namespaces: the fallbacks a kernel without them gets."""

    def _server_args(self, socket_path: str, scratch_root: str) -> list[str]:
        return [*super()._server_args(socket_path, scratch_root), "--no-namespaces"]


def test_without_namespaces_the_fallbacks_hold_and_are_reported():
    with _NoNamespaces(limits=ATTACK) as sandbox:
        text = notes(sandbox)
        for gap in ("NO IPC namespace", "NO scratch quota", "no filesystem jail",
                    "setsid"):
            assert gap in text, text
        bystander = sandbox.open()
        run_ok(bystander, "state = 41")
        # The deep chain now lands on the host: the zygote hands it to a forked cleaner.
        s = sandbox.open()
        scratch = s.info["scratch"]
        run_ok(s, DEEP_CHAIN)
        # A setsid child escapes the process-group kill; the session's cgroup catches it.
        # (os.fork, not subprocess: without a mount namespace a session uid cannot read an
        # interpreter under /root, so only already-imported modules work; stated in notes.)
        if sandbox.features.get("python_unreadable"):
            assert "only modules the zygote imported" in text
        run_ok(s, "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                  "    time.sleep(600)\n    os._exit(0)\n'spawned'")
        sid = s.id
        s.close()
        assert wait_until(lambda: not os.path.exists(scratch), 10.0), "scratch dir survived"
        if cgroup_dirs(sandbox):
            assert wait_until(lambda: not any(os.path.exists(os.path.join(d, sid))
                                              for d in cgroup_dirs(sandbox)), 10.0)
        else:
            assert "NO per-session cgroup" in text
        assert_neighbours_fine(sandbox, bystander)
        bystander.close()


NOISY_NEIGHBOUR = """
import os
for _ in range(8):  # spinning processes, more than this machine has cores
    try:
        if os.fork() == 0:
            while True:
                pass
    except OSError:
        break
'spinning'
"""


def test_call_timeouts_hold_whatever_the_neighbours_do(sb, bystander):
    noisy = [sb.open() for _ in range(2)]
    try:
        for n in noisy:
            assert n.run(NOISY_NEIGHBOUR).value == "'spinning'"
        with sb.open() as s:
            t0 = time.monotonic()
            r = s.run("while True: pass", timeout_s=1.0)
            took = time.monotonic() - t0
            assert r.timed_out and took < 1.0 + 0.5, took
        t0 = time.monotonic()
        for n in noisy:
            n.close()  # killing 8 spinning processes each must not hold anyone up
        assert time.monotonic() - t0 < 0.5
    finally:
        for n in noisy:
            n.close()
    assert_neighbours_fine(sb, bystander)


def test_protection_report_is_measured():
    from sandboxes.registry import protection_report

    rep = protection_report("local", limits=ATTACK)
    assert rep["available"] and rep["backend"] == "local"
    p = rep["protections"]
    assert p.rlimits and any("IPC namespace" in n for n in p.notes)
    missing = protection_report("no-such-backend")
    assert not missing["available"] and "unknown sandbox backend" in missing["reason"]


def test_orphan_zombies_do_not_use_up_the_pids_limit(sb, bystander):
    if not features(sb).get("pid_ns"):
        pytest.skip("no PID namespace: orphans go to the host's init")
    with sb.open() as s:
        orphans = ("import subprocess, time\nfor _ in range(15):\n"
                   "    subprocess.run(['sh', '-c', 'sleep 0.01 &'])\ntime.sleep(0.2)\n'ok'")
        for _ in range(3):  # 45 orphans in all: more than max_procs (32) if left as zombies
            assert run_ok(s, orphans) == "'ok'"
        assert run_ok(s, "import subprocess\n[subprocess.run(['true']).returncode "
                         "for _ in range(8)].count(0)") == "8"
    assert_neighbours_fine(sb, bystander)
