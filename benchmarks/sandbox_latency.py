"""Sandbox latency benchmark: our backends against the peers' ways of running a tool call.

    python benchmarks/sandbox_latency.py [--quick] [--backends local,bubblewrap,docker]
                                         [--out benchmarks/results/sandbox_latency.png]

For every available backend: session start (paced like episodes, and in a burst), a trivial
call (``1+1``), a numpy call (``numpy.linalg.svd`` of a small matrix, numpy pre-imported),
throughput with 1, 8 and 64 concurrent sessions, and the private memory of an idle session
(USS/PSS from /proc/PID/smaps_rollup). Then the peers' patterns: a new ``python -c`` per call
(GEM, SkyRL-Gym, verifiers) and, when Docker is up, a new ``docker run --rm`` container per
call (OpenAI's gpt-oss reference python tool). Prints a table and ratios and saves a log-scale
bar plot (and the numbers as JSON next to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes import Limits, Sandbox, available_backends, make_sandbox

TRIVIAL = "1+1"
NUMPY = "numpy.linalg.svd(numpy.arange(64.0).reshape(8, 8))[1][0]"
TTY = sys.stdout.isatty()
TARGETS = {"trivial call p50 ms": 1.0, "session start p50 ms": 5.0, "idle USS MB": 10.0}


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def timed(fn: Callable[[], Any], n: int, label: str, pace_s: float = 0.0) -> dict[str, float]:
    ts = []
    step = max(1, n // 10)
    for i in range(n):
        if pace_s:
            time.sleep(pace_s)
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
        if TTY and (i + 1) % step == 0:
            print(f"\r  {label}: {i + 1}/{n}", end="", flush=True)
    res = {"p50": statistics.median(ts), "p95": pct(ts, 0.95), "n": n}
    print(("\r" if TTY else "") + f"  {label}: n={n} p50 {res['p50']:.3f} ms  "
          f"p95 {res['p95']:.3f} ms", flush=True)
    return res


def session_host_pid(sb: Sandbox, s: Any) -> int | None:
    """The session's pid in the host PID namespace (needed to read its smaps)."""
    if s.info.get("host_pid"):
        return int(s.info["host_pid"])
    zpid = getattr(sb, "zygote_pid", None)
    if zpid is None:
        return None
    for entry in os.listdir("/proc"):  # a jailed zygote: match the pid seen inside the jail
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                ns = next((ln.split()[1:] for ln in f if ln.startswith("NSpid:")), [])
        except OSError:
            continue
        if len(ns) >= 2 and int(ns[1]) == s.pid:
            return int(entry)
    return None


def session_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants: a session is its keeper plus the cell it relays to."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def smaps_mb(pid: int) -> dict[str, float]:
    """USS/PSS/RSS of the session: summed over its processes (keeper and cell)."""
    vals: dict[str, int] = {}
    for p in session_pids(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                        vals[parts[0][:-1]] = vals.get(parts[0][:-1], 0) + int(parts[1])
        except OSError:
            continue
    uss = vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0)
    return {"uss_mb": uss / 1024, "pss_mb": vals.get("Pss", 0) / 1024,
            "rss_mb": vals.get("Rss", 0) / 1024}


async def throughput(sb: Sandbox, concurrency: int, calls_each: int) -> dict[str, float]:
    sessions = [await sb.aopen() for _ in range(concurrency)]
    errors = 0

    async def worker(s: Any) -> None:
        nonlocal errors
        for _ in range(calls_each):
            r = await s.arun(TRIVIAL)
            errors += r.value != "2"

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    elapsed = time.perf_counter() - t0
    for s in sessions:
        await s.aclose()
    return {"calls_per_s": concurrency * calls_each / elapsed, "errors": errors}


def bench_backend(name: str, quick: bool) -> dict[str, Any]:
    n = 30 if quick else 200
    say(f"[{name}] starting the sandbox (numpy pre-imported)...")
    t0 = time.perf_counter()
    sb = make_sandbox(name, preimports=("numpy",), limits=Limits(timeout_s=30))
    out: dict[str, Any] = {"sandbox start s": time.perf_counter() - t0}
    try:
        with sb.open() as s:  # warm up
            s.run(TRIVIAL)
        say(f"[{name}] session start")
        # Paced like episodes (a spare is ready again) and in a burst (spares run out).
        out["session start"] = timed(lambda: sb.open().close(), n // 2, "open (paced)",
                                     pace_s=0.1)
        out["session start burst"] = timed(lambda: sb.open().close(), n // 2, "open (burst)")
        with sb.open() as s:
            say(f"[{name}] trivial and numpy calls")
            out["trivial call"] = timed(lambda: s.run(TRIVIAL), n * 5, "1+1")
            s.run("import numpy")
            out["numpy call"] = timed(lambda: s.run(NUMPY), n, "svd")
        for c in (1, 8, 64):
            say(f"[{name}] throughput with {c} concurrent sessions")
            calls = max(5, (50 if quick else 400) // c)
            out[f"throughput x{c}"] = asyncio.run(throughput(sb, c, calls))
        with sb.open() as s:
            s.run("x = 1")
            time.sleep(0.2)
            pid = session_host_pid(sb, s)
            out["idle memory"] = smaps_mb(pid) if pid else None
    finally:
        sb.close()
    return out


def bench_python_c(quick: bool) -> dict[str, float]:
    say("[peer] new `python -c` per call")
    return timed(lambda: subprocess.run([sys.executable, "-c", f"print({TRIVIAL})"],
                                        capture_output=True, check=True),
                 10 if quick else 40, "python -c")


def docker_image() -> str | None:
    if shutil.which("docker") is None:
        return None
    try:
        names = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if "agent-envs-sandbox:latest" in names:
        return "agent-envs-sandbox:latest"
    return next((x for x in names if "<none>" not in x), None)


def bench_docker_run(quick: bool, image: str) -> dict[str, float]:
    say(f"[peer] new `docker run --rm` container per call ({image})")
    return timed(lambda: subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "python3", "-c",
         f"print({TRIVIAL})"], capture_output=True, check=True), 5 if quick else 20,
        "docker run")


def report(results: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    lines = []
    cols = list(results)
    head = f"{'metric':34}" + "".join(f"{c:>16}" for c in cols)
    lines += [head, "-" * len(head)]

    def row(label: str, get: Callable[[dict[str, Any]], float | None], fmt: str) -> None:
        cells = []
        for c in cols:
            try:
                v = get(results[c])
            except (KeyError, TypeError):
                v = None
            cells.append(f"{format(v, fmt):>16}" if v is not None else f"{'n/a':>16}")
        lines.append(f"{label:34}" + "".join(cells))

    row("session start p50 ms (paced 0.1 s)", lambda r: r["session start"]["p50"], ".2f")
    row("session start p95 ms (paced 0.1 s)", lambda r: r["session start"]["p95"], ".2f")
    row("session start p50 ms (burst)", lambda r: r["session start burst"]["p50"], ".2f")
    row("trivial call p50 ms", lambda r: r["trivial call"]["p50"], ".3f")
    row("trivial call p95 ms", lambda r: r["trivial call"]["p95"], ".3f")
    row("numpy svd call p50 ms", lambda r: r["numpy call"]["p50"], ".3f")
    row("numpy svd call p95 ms", lambda r: r["numpy call"]["p95"], ".3f")
    for c in (1, 8, 64):
        row(f"calls/s, {c} concurrent sessions", lambda r, c=c: r[f"throughput x{c}"]["calls_per_s"],
            ".0f")
        row(f"errors, {c} concurrent sessions", lambda r, c=c: r[f"throughput x{c}"]["errors"],
            "d")
    row("idle session USS MB", lambda r: r["idle memory"]["uss_mb"], ".2f")
    row("idle session PSS MB", lambda r: r["idle memory"]["pss_mb"], ".2f")
    lines.append("")
    for peer, r in peers.items():
        lines.append(f"peer: {peer:40} p50 {r['p50']:9.2f} ms   p95 {r['p95']:9.2f} ms")
    lines.append("")
    for c in cols:
        call = results[c]["trivial call"]["p50"]
        for peer, r in peers.items():
            lines.append(f"{c} zygote call is {r['p50'] / call:,.0f}x faster than {peer}")
        start = results[c]["session start"]["p50"]
        if "python -c per call" in peers:
            lines.append(f"{c} session start is {peers['python -c per call']['p50'] / start:,.1f}x "
                         "faster than one python -c")
    if "local" in results:
        r = results["local"]
        checks = {"trivial call p50 ms": r["trivial call"]["p50"],
                  "session start p50 ms": r["session start"]["p50"],
                  "idle USS MB": (r.get("idle memory") or {}).get("uss_mb", float("nan"))}
        lines.append("")
        for k, v in checks.items():
            ok = "OK " if v <= TARGETS[k] else "MISS"
            lines.append(f"target {ok} local {k} = {v:.3f} (target <= {TARGETS[k]})")
        errs = r["throughput x64"]["errors"]
        lines.append(f"target {'OK ' if errs == 0 else 'MISS'} 64 concurrent sessions, "
                     f"{errs} errors")
    return lines


def plot(results: dict[str, Any], peers: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    for c, r in results.items():
        for key, lab in (("session start", "session start"), ("trivial call", "call 1+1"),
                         ("numpy call", "call numpy svd")):
            labels.append(f"{c}\n{lab}")
            values.append(r[key]["p50"])
            colors.append({"local": "tab:green", "bubblewrap": "tab:blue"}.get(c, "tab:purple"))
    for peer, r in peers.items():
        labels.append(peer.replace(" per call", "\nper call"))
        values.append(r["p50"])
        colors.append("tab:red")
    fig, ax = plt.subplots(figsize=(max(8, 1.0 * len(labels)), 5))
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_ylabel("median latency, ms (log scale)")
    ax.set_title("Sandbox latency: zygote backends vs. a new process/container per call")
    for b, v in zip(bars, values):
        ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about 1 minute)")
    p.add_argument("--backends", default="local,bubblewrap,docker",
                   help="comma-separated backends to measure (unavailable ones are skipped)")
    p.add_argument("--out", default="benchmarks/results/sandbox_latency.png", type=Path,
                   help="where to save the bar plot (numbers go next to it as .json)")
    args = p.parse_args(argv)
    avail = available_backends()
    results: dict[str, Any] = {}
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name not in avail:
            p.error(f"unknown backend {name!r}; choose from {', '.join(avail)}")
        if avail[name] is not None:
            say(f"[{name}] skipped: {avail[name]}")
            continue
        try:
            results[name] = bench_backend(name, args.quick)
        except Exception as e:  # noqa: BLE001 - one broken backend should not hide the rest
            say(f"[{name}] failed: {type(e).__name__}: {e}")
    peers = {"python -c per call": bench_python_c(args.quick)}
    image = docker_image() if "docker" in args.backends else None
    if image is not None:
        try:
            peers["docker run --rm per call"] = bench_docker_run(args.quick, image)
        except subprocess.CalledProcessError as e:
            say(f"[peer] docker run failed: {e}")
    lines = report(results, peers)
    say("\n" + "\n".join(lines))
    if results:
        plot(results, peers, args.out)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"backends": results, "peers": peers, "quick": args.quick,
             "cpus": os.cpu_count()}, indent=2))
        say(f"\nplot: {args.out}\nnumbers: {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
