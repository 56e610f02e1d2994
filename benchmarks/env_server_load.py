"""Load test: sessions ramped on one ``agent-envs serve`` server, and the same in-process.

    python benchmarks/env_server.py --load [--levels 256,512,1024,2048,4096] [--steps 3]
        [--env python-tool|toy-digit] [--sandbox bubblewrap] [--arms server,in-process]
        [--reserve-gb 4] [--budget-min 40] [--server-root DIR]
        [--out benchmarks/results/env_server_load.png]

Each arm runs in a child process of its own (``--arm``), so its memory is its own:

* ``server``: the child starts ``agent-envs serve ENV`` (with a token; python-tool with
  ``--env-arg sandbox=SANDBOX``) and drives it over loopback with ``agent_envs.remote``
  sessions, all on one event loop, as a trainer's collector would; ``--server-root`` runs
  that server from another checkout (a git worktree of an older commit: before and after);
* ``in-process``: the child makes the same envs with ``agent_envs.make`` and drives them on
  its event loop (``areset``/``astep``), as the collector does without a server.

At each level the arm first opens the new sessions all at once (the **burst**: each is made,
reset and takes its first step), then every open session takes ``--steps`` more steps at once
(**steady state**). python-tool steps run a cell (``x = K``, then ``x += 1``) whose value must
come back, so a session that lost its state or got another's shows up as ``wrong output``;
toy-digit (no sandbox: what the server itself costs per session) steps with a cut completion
and must get its cut-off notice. Recorded per level: errors by kind, the latency of every open
(make + reset) and step (percentiles), the PSS of the processes hosting the sessions (the server
process, or the in-process driver, plus the sandbox's zygote and session processes, from
``/proc/PID/smaps_rollup``), their CPU time per step (``schedstat``; over the server, the
client's too), and the server's threads and open files.

It stops by itself: after the last level; before a level whose sessions would leave less than
``--reserve-gb`` of memory available (projected from the last level's cost per session); past
``--budget-min``; or after a level that lost more than 5% of its sessions. Then every session
is closed and the server stopped. Prints a table per arm and the two side by side, and saves a
plot and the numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The load ends episodes, not these budgets.
ENV_KWARGS = {"max_turns": 100_000, "max_episode_s": 86_400.0, "max_tokens": 1_000_000}
#: What each step does and how its answer is checked, per env:
#: python-tool runs a cell (``x = K`` first, then ``x += 1``) whose value must come back;
#: toy-digit (no sandbox: the server's own cost) gets a cut completion and must answer with
#: its cut-off notice.
ENVS = ("python-tool", "toy-digit")
TARGET_MB = 2.5  # issue 24: PSS per python-tool session over one server


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# -- /proc -------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                out[int(fields[1])].append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (not ``pid`` itself)."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def pss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def cpu_s(pids: list[int]) -> float:
    """CPU seconds the processes' threads have run, from ``schedstat`` (nanoseconds: the
    clock-tick counters of ``stat`` round a session's 0.1 ms cells down to nothing)."""
    total = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def threads_and_fds(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        threads = int(re.search(r"Threads:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def mem_available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


# -- errors ------------------------------------------------------------------------------

class Errors:
    """Errors by kind, with one example each."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, example[:300])

    def exception(self, where: str, e: BaseException) -> None:
        self.add(f"{where}: {type(e).__name__}", f"{type(e).__name__}: {e}")

    def infra(self, where: str, why: str) -> None:
        words = re.sub(r"\S*\d\S*|'[^']*'", "", why).split()[:6]  # no ids, numbers, paths
        self.add(f"{where}: infra: {' '.join(words)}", why)


# -- one arm -----------------------------------------------------------------------------

class Arm:
    """Sessions of one arm and how to measure the processes that host them."""

    def __init__(self, name: str, env_id: str, sandbox: str, max_sessions: int,
                 server_root: Path = ROOT) -> None:
        import agent_envs
        from agent_envs.harmony import get_codec

        self.name = name
        self.env_id = env_id
        self.codec = get_codec()
        self.server: subprocess.Popen[str] | None = None
        kwargs = dict(ENV_KWARGS)
        if env_id == "python-tool":
            kwargs["sandbox"] = sandbox
        if name == "server":
            token = secrets.token_hex(16)
            args = [a for k, v in kwargs.items() for a in ("--env-arg", f"{k}={json.dumps(v)}")]
            self.server = subprocess.Popen(
                [sys.executable, "-m", "agent_envs.cli", "serve", env_id, "--port", "0",
                 "--max-sessions", str(max_sessions), "--idle-timeout", "0", "--token", token,
                 *args], cwd=server_root, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert self.server.stdout is not None
            line = ""
            while not line.startswith("serving") and (more := self.server.stdout.readline()):
                line = more
            m = re.search(r"on (http://\S+) ", line)
            if m is None:
                self.server.kill()
                raise RuntimeError(f"agent-envs serve did not start: {line}")
            url = m.group(1)
            self.host_pid = self.server.pid
            self.make: Callable[[], Any] = lambda: agent_envs.remote(
                url, env_id, token=token, connect_timeout_s=300, busy_timeout_s=300)
        else:
            self.host_pid = os.getpid()
            self.make = lambda: agent_envs.make(env_id, **kwargs)
            env = self.make()  # start the shared zygote (python-tool) before the baseline
            env.reset(seed=0)
            env.step(self.action(0, first=True)[0])
            env.close()

    def action(self, value: int, *, first: bool) -> tuple[list[int], str]:
        """The step's token ids, and what the text the env appends must contain."""
        if self.env_id == "toy-digit":
            return self.codec.encode(str(value % 10)), "cut off"
        code = f"x = {value}\nx" if first else "x += 1\nx"
        return (self.codec.encode(f"<|channel|>analysis to=python code<|message|>{code}"
                                  "<|call|>"), str(value))

    def processes(self) -> tuple[list[int], list[int]]:
        """(the host process, the sandbox's processes below it)."""
        return [self.host_pid], descendants(self.host_pid)

    def memory(self) -> dict[str, float]:
        host, sandbox = self.processes()
        return {"host_mb": pss_mb(host), "sandbox_mb": pss_mb(sandbox)}

    def keeper(self) -> str | None:
        """Which keeper the sandbox's sessions run: "c" (processes named ae-keeper, the C
        relay), "python", or None without a sandbox."""
        _, sandbox = self.processes()
        if not sandbox:
            return None
        for p in sandbox:
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == "ae-keeper":
                        return "c"
            except OSError:
                pass
        return "python"

    def cpu(self) -> float:
        host, sandbox = self.processes()
        return cpu_s(host + sandbox)

    def host_cpu(self) -> float:
        """CPU seconds of the server process (or the in-process driver) alone."""
        return cpu_s([self.host_pid])

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


class Session:
    __slots__ = ("env", "k", "obs", "value")

    def __init__(self, env: Any, k: int) -> None:
        self.env, self.k, self.obs, self.value = env, k, None, k * 1000


async def _timed(coro: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = await coro
    return out, time.perf_counter() - t0


async def _step(arm: Arm, s: Session, want: int, errors: Errors, where: str,
                lat: list[float]) -> bool:
    act, expect = arm.action(want, first=where.startswith("burst"))
    try:
        (obs, _, terminated, truncated, info), dt = await _timed(s.env.astep(act))
    except Exception as e:  # noqa: BLE001 - counted by kind
        errors.exception(where, e)
        return False
    lat.append(dt)
    if info.get("infra_error"):
        errors.infra(where, info["infra_error"])
        return False
    appended = arm.codec.decode(obs[len(s.obs) + len(act):])
    s.obs = obs
    if terminated or truncated:
        errors.add(f"{where}: episode ended", str(info.get("truncated_reason")))
        return False
    if expect not in appended:
        errors.add(f"{where}: wrong output", f"wanted {expect!r}, got {appended[-200:]!r}")
        return False
    s.value = want
    return True


async def _open(arm: Arm, k: int, errors: Errors, reset_lat: list[float],
                step_lat: list[float]) -> Session | None:
    """A new session: the env made and reset (timed together: over the server, the env is
    made at the first reset), then its first cell."""
    t0 = time.perf_counter()
    s = Session(arm.make(), k)
    try:
        obs, _ = await s.env.areset(seed=k)
    except Exception as e:  # noqa: BLE001 - counted by kind
        errors.exception("burst reset", e)
        return None
    reset_lat.append(time.perf_counter() - t0)
    s.obs = obs
    if not await _step(arm, s, s.value, errors, "burst step", step_lat):
        await _close(s)
        return None
    return s


async def _close(s: Session) -> None:
    try:
        await s.env.aclose()
    except Exception:  # noqa: BLE001, S110 - best effort at the end
        pass


def _lat(xs: list[float]) -> dict[str, float | None]:
    return {f"p{q}_ms": (None if (v := pct(xs, q / 100)) is None else v * 1e3)
            for q in (50, 90, 99)} | {"max_ms": max(xs) * 1e3 if xs else None}


async def run_arm(name: str, env_id: str, levels: list[int], steps: int, sandbox: str,
                  reserve_gb: float, deadline: float, server_root: Path = ROOT
                  ) -> dict[str, Any]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    arm = Arm(name, env_id, sandbox, max(levels) + 64, server_root)
    rows: list[dict[str, Any]] = []
    sessions: list[Session] = []
    stopped = "after the last level"
    try:
        await asyncio.sleep(1.0)
        base = arm.memory()
        say(f"[{name}] idle: host {base['host_mb']:.0f} MB, sandbox {base['sandbox_mb']:.0f} MB "
            f"PSS; {mem_available_gb():.1f} GB available")
        per_session_mb = 6.0  # a guess until the first level is measured
        next_k = 1
        for level in levels:
            new = level - len(sessions)
            need_gb = new * per_session_mb * 1.25 / 1024
            avail = mem_available_gb()
            if avail - need_gb < reserve_gb:
                stopped = (f"before {level} sessions: they would need ~{need_gb:.1f} GB more and "
                           f"{avail:.1f} GB is available (--reserve-gb {reserve_gb:g})")
                break
            if time.monotonic() > deadline:
                stopped = f"before {level} sessions: past --budget-min"
                break
            errors = Errors()
            reset_lat: list[float] = []
            burst_lat: list[float] = []
            say(f"[{name}] {level} sessions: opening {new} at once")
            bcpu0, bdrv0, t0 = arm.cpu(), _own_cpu(), time.perf_counter()
            opened = await asyncio.gather(*(_open(arm, next_k + i, errors, reset_lat, burst_lat)
                                            for i in range(new)))
            burst_s = time.perf_counter() - t0
            burst_cpu, burst_drv = arm.cpu() - bcpu0, _own_cpu() - bdrv0
            next_k += new
            sessions += [s for s in opened if s is not None]
            lost = new - sum(s is not None for s in opened)
            say(f"[{name}] {level} sessions: burst {burst_s:.1f} s, {lost} lost; steady state, "
                f"{steps} step(s) each")
            steady_lat: list[float] = []
            cpu0, host0, drv0, t1 = arm.cpu(), arm.host_cpu(), _own_cpu(), time.perf_counter()
            ok_steps = 0
            for _ in range(steps):
                oks = await asyncio.gather(*(
                    _step(arm, s, s.value + 1, errors, "steady step", steady_lat)
                    for s in sessions))
                ok_steps += sum(oks)
                failed = [s for s, ok in zip(sessions, oks, strict=True) if not ok]
                sessions = [s for s, ok in zip(sessions, oks, strict=True) if ok]
                await asyncio.gather(*(_close(s) for s in failed))
            steady_s, cpu_used = time.perf_counter() - t1, arm.cpu() - cpu0
            drv_used, host_used = _own_cpu() - drv0, arm.host_cpu() - host0
            mem = arm.memory()
            n = max(1, len(sessions))
            row = {"level": level, "sessions": len(sessions), "opened": new - lost,
                   "lost": lost, "errors": dict(errors.counts), "examples": errors.examples,
                   "burst_s": burst_s, "reset": _lat(reset_lat), "burst_step": _lat(burst_lat),
                   "steady_step": _lat(steady_lat), "steady_s": steady_s,
                   "steps_per_s": ok_steps / steady_s if steady_s else None,
                   "cpu_ms_per_step": cpu_used / max(1, ok_steps) * 1e3,
                   "host_cpu_ms_per_step": host_used / max(1, ok_steps) * 1e3,
                   "burst_cpu_s": burst_cpu,
                   # the server arm's driver is the client (a trainer's side of the wire)
                   "client_cpu_ms_per_step": (drv_used / max(1, ok_steps) * 1e3
                                              if name == "server" else None),
                   "burst_client_cpu_s": burst_drv if name == "server" else None,
                   **mem, "base_host_mb": base["host_mb"], "base_sandbox_mb": base["sandbox_mb"],
                   "mb_per_session": (mem["host_mb"] + mem["sandbox_mb"]) / n,
                   "host_mb_per_session": (mem["host_mb"] - base["host_mb"]) / n,
                   "sandbox_mb_per_session": (mem["sandbox_mb"] - base["sandbox_mb"]) / n,
                   "marginal_mb_per_session": (mem["host_mb"] + mem["sandbox_mb"]
                                               - base["host_mb"] - base["sandbox_mb"]) / n,
                   "mem_available_gb": mem_available_gb(),
                   "load_avg": os.getloadavg()[0]}
            row["keeper"] = arm.keeper() if env_id == "python-tool" else None
            if arm.server is not None:
                row["server_threads"], row["server_fds"] = threads_and_fds(arm.host_pid)
            row["driver_mb"] = pss_mb([os.getpid()]) if name == "server" else None
            rows.append(row)
            per_session_mb = max(row["marginal_mb_per_session"], 0.5)
            say(f"[{name}] {level} sessions: {sum(errors.counts.values())} errors "
                f"{dict(errors.counts) or ''}; {row['mb_per_session']:.2f} MB PSS per session "
                f"(host {row['host_mb_per_session']:.2f} + sandbox "
                f"{row['sandbox_mb_per_session']:.2f} marginal); steady step p50 "
                f"{row['steady_step']['p50_ms'] or float('nan'):.0f} ms, p99 "
                f"{row['steady_step']['p99_ms'] or float('nan'):.0f} ms; "
                f"{row['cpu_ms_per_step']:.1f} CPU-ms per step")
            if lost > 0.05 * max(1, new):
                stopped = f"after {level} sessions: more than 5% of the burst was lost"
                break
    finally:
        say(f"[{name}] closing {len(sessions)} sessions")
        await asyncio.gather(*(_close(s) for s in sessions))
        arm.stop()
    return {"arm": name, "env": env_id, "sandbox": sandbox if env_id == "python-tool" else None,
            "server_root": str(server_root), "steps": steps, "stopped": stopped, "rows": rows}


# -- the report ----------------------------------------------------------------------------

def _f(v: float | None, fmt: str = ".0f") -> str:
    return "-" if v is None else format(v, fmt)


def table(result: dict[str, Any]) -> list[str]:
    what = result["env"] + (f", {result['sandbox']} sandbox" if result["sandbox"] else "")
    keepers = {r.get("keeper") for r in result["rows"]} - {None}
    if keepers:
        what += f", {'/'.join(sorted(keepers))} keeper"
    lines = [f"{result['arm']} ({what}; stopped {result['stopped']}):",
             ("sessions  errors  MB/session (host+sandbox marginal)  burst s  open p50/p99 ms"
              "  steady step p50/p99 ms  steps/s  CPU-ms/step (host) client  server threads")]
    for r in result["rows"]:
        errs = sum(r["errors"].values())
        lines.append(
            f"{r['sessions']:>8}  {errs:>6}  {r['mb_per_session']:>6.2f} "
            f"({r['host_mb_per_session']:.2f}+{r['sandbox_mb_per_session']:.2f})"
            f"{'':>14}{r['burst_s']:>8.1f}  {_f(r['reset']['p50_ms']):>7}/"
            f"{_f(r['reset']['p99_ms']):<7}  {_f(r['steady_step']['p50_ms']):>10}/"
            f"{_f(r['steady_step']['p99_ms']):<11}  {_f(r['steps_per_s'], '.1f'):>7}  "
            f"{r['cpu_ms_per_step']:>11.2f} ({r['host_cpu_ms_per_step']:.2f})"
            + ("       -" if r.get("client_cpu_ms_per_step") is None
               else f"  {r['client_cpu_ms_per_step']:>6.2f}")
            + f"  {r.get('server_threads') or '-':>14}")
        for kind, n in r["errors"].items():
            lines.append(f"{'':>10}{n} x {kind}: {r['examples'][kind]}")
    return lines


def side_by_side(results: list[dict[str, Any]]) -> list[str]:
    by = {r["arm"]: {row["level"]: row for row in r["rows"]} for r in results}
    if not {"server", "in-process"} <= set(by):
        return []
    lines = [("server vs in-process (ratio server / in-process; CPU-ms per step on the server "
              "side, then with the client's):"),
             ("sessions  MB/session server  in-process  ratio  steps/s server  in-process  "
              "ratio  CPU-ms/step server  +client  in-process  ratio")]
    for level in sorted(set(by["server"]) & set(by["in-process"])):
        a, b = by["server"][level], by["in-process"][level]
        ratio = (lambda x, y: "-" if not x or not y else f"{x / y:.2f}x")
        both = a["cpu_ms_per_step"] + (a.get("client_cpu_ms_per_step") or 0.0)
        lines.append(
            f"{level:>8}  {a['mb_per_session']:>17.2f}  {b['mb_per_session']:>10.2f}  "
            f"{ratio(a['mb_per_session'], b['mb_per_session']):>5}  "
            f"{_f(a['steps_per_s']):>14}  {_f(b['steps_per_s']):>10}  "
            f"{ratio(a['steps_per_s'], b['steps_per_s']):>5}  "
            f"{a['cpu_ms_per_step']:>18.2f}  {both:>7.2f}  {b['cpu_ms_per_step']:>10.2f}  "
            f"{ratio(both, b['cpu_ms_per_step']):>5}")
    return lines


def report(results: list[dict[str, Any]]) -> None:
    """Every arm's table, then the two side by side."""
    for res in results:
        for line in table(res):
            say(line)
        say("")
    for line in side_by_side(results):
        say(line)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, lat) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {"server": "#dd8452", "in-process": "#4c72b0"}
    for res in results:
        rows = res["rows"]
        if not rows:
            continue
        x = [r["sessions"] for r in rows]
        c = colors.get(res["arm"], "gray")
        mem.plot(x, [r["mb_per_session"] for r in rows], "o-", color=c,
                 label=f"{res['arm']}: all processes / sessions")
        mem.plot(x, [r["host_mb_per_session"] for r in rows], "s--", color=c, alpha=0.7,
                 label=f"{res['arm']}: {'server' if res['arm'] == 'server' else 'driver'} "
                       "process, per session added")
        mem.plot(x, [r["sandbox_mb_per_session"] for r in rows], "^:", color=c, alpha=0.7,
                 label=f"{res['arm']}: sandbox processes, per session added")
        for q, style in (("p50_ms", "o-"), ("p99_ms", "x--")):
            lat.plot(x, [r["steady_step"][q] for r in rows], style, color=c,
                     label=f"{res['arm']} steady step {q[:3]}")
        for r in rows:
            errs = sum(r["errors"].values())
            lat.annotate(f"{errs} err", (r["sessions"], r["steady_step"]["p99_ms"] or 1),
                         fontsize=7, color=c, textcoords="offset points", xytext=(0, 5))
    for ax in (mem, lat):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"concurrent {results[0]['env']} sessions")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    mem.axhline(TARGET_MB, color="gray", linestyle="--", linewidth=1)
    mem.annotate(f"issue 24's target: {TARGET_MB:g} MB", (mem.get_xlim()[0], TARGET_MB),
                 fontsize=7, color="gray", textcoords="offset points", xytext=(4, 3))
    mem.set_ylabel("MB PSS per session")
    mem.set_ylim(bottom=0)
    lat.set_ylabel("ms (every open session stepping at once)")
    lat.set_yscale("log")
    what = (f"{results[0]['env']} sessions" + (f" ({results[0]['sandbox']} sandbox)"
                                                  if results[0]["sandbox"] else "")
            if results else "sessions")
    fig.suptitle(f"{what}: over one agent-envs serve server vs in-process; "
                 f"{os.cpu_count()} CPUs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: --levels must be comma-separated integers, got {text!r}") from None
    if not levels or any(b <= a for a, b in itertools.pairwise(levels)) or levels[0] < 1:
        raise SystemExit(f"error: --levels must rise from >= 1, e.g. 256,512,1024; got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="256,512,1024,2048,4096",
                    help="concurrent sessions to ramp through (comma-separated, rising)")
    ap.add_argument("--steps", type=int, default=3, help="steady-state steps per session and level")
    ap.add_argument("--env", default="python-tool", choices=ENVS,
                    help="python-tool (sandbox cells) or toy-digit (no sandbox: the server's "
                         "own cost per session)")
    ap.add_argument("--sandbox", default="bubblewrap", help="python-tool's sandbox backend")
    ap.add_argument("--server-root", type=Path, default=ROOT,
                    help="run the server from this checkout (e.g. a git worktree of an older "
                         "commit, to compare); default: this one")
    ap.add_argument("--arms", default="server,in-process", help="server, in-process or both")
    ap.add_argument("--reserve-gb", type=float, default=4.0,
                    help="stop before a level that would leave less memory available than this")
    ap.add_argument("--budget-min", type=float, default=40.0,
                    help="start no new level after this many minutes (per arm)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/env_server_load.png"))
    ap.add_argument("--replot", action="store_true",
                    help="print the tables and redraw the plot from the JSON")
    ap.add_argument("--arm", default=None, help=argparse.SUPPRESS)  # a child runs one arm
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.out.suffix != ".png":
        raise SystemExit(f"error: --out must be a .png path (the JSON goes beside it), got {a.out}")
    if a.replot:
        results = json.loads(a.out.with_suffix(".json").read_text())["results"]
        report(results)
        plot(results, a.out)
        return 0
    levels = _levels(a.levels)
    if a.steps < 1:
        raise SystemExit(f"error: --steps must be >= 1, got {a.steps}")
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    bad = [x for x in arms if x not in ("server", "in-process")]
    if bad or not arms:
        raise SystemExit(f"error: --arms takes server and/or in-process, got {a.arms!r}")
    if a.arm is not None:  # the child: one arm, results to --json
        from agent_envs.harmony.vocab import use_default_vocab

        use_default_vocab()
        deadline = time.monotonic() + a.budget_min * 60
        result = asyncio.run(run_arm(a.arm, a.env, levels, a.steps, a.sandbox, a.reserve_gb,
                                     deadline, a.server_root.resolve()))
        assert a.json is not None
        a.json.write_text(json.dumps(result))
        return 0
    sandbox = f" ({a.sandbox} sandbox)" if a.env == "python-tool" else ""
    say(f"load test: {a.env} sessions ramped {levels}{sandbox}, {a.steps} "
        f"steady step(s) per level; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, {mem_available_gb():.1f} GB available")
    results = []
    for arm in arms:
        tmp = a.out.with_name(f".{a.out.stem}.{arm}.json")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--json", str(tmp),
               "--levels", a.levels, "--steps", str(a.steps), "--sandbox", a.sandbox,
               "--env", a.env, "--server-root", str(a.server_root),
               "--reserve-gb", str(a.reserve_gb), "--budget-min", str(a.budget_min),
               "--out", str(a.out)]
        rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        if rc != 0 or not tmp.exists():
            say(f"error: the {arm} arm failed (exit {rc})")
            return 1
        results.append(json.loads(tmp.read_text()))
        tmp.unlink()
    say("")
    report(results)
    plot(results, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(
        {"cpus": os.cpu_count(), "levels": levels, "steps": a.steps, "results": results},
        indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
