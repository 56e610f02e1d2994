"""CPU share benchmark: does a session's call stay fast while other sessions burn the CPU?

    python benchmarks/sandbox_cpu_share.py [--quick] [--backends local,bubblewrap,docker]
                                           [--burners 3,4,8] [--calls 15]
                                           [--out benchmarks/results/sandbox_cpu_share.png]

A cell can leave a process running after its call returns (``subprocess.Popen`` of a busy
loop); it burns a core until the episode ends. For every available backend, with the per-session
CPU share (``cpu_share=True``, the default: a session's cgroup weight is the kernel default
during its calls and the minimum between them) and without it (``cpu_share=False``: no cpu
cgroup, the behaviour before), this opens a *tester* session, times a fixed CPU-bound call in it
with no background load (idle), then leaves one busy-loop process in each of N other sessions
(N above the core count) and times the same call again. It prints the slowdown (with burners /
idle) side by side, with and without the share, and their ratio, and saves a plot and the
numbers as JSON next to it.

The measurements for one N run back to back (share, then no share, each against its own idle
time), so a change in the machine's other load between them moves both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes import Limits, Sandbox, available_backends, make_sandbox

BURN = ("import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "'burning'")
LIMITS = Limits(timeout_s=60, cpu_s=600, max_procs=16)


def say(msg: str) -> None:
    print(msg, flush=True)


def work_code(loops: int) -> str:
    """A call that needs a fixed amount of CPU (``loops`` iterations of a Python loop)."""
    return f"s = 0\nfor i in range({loops}):\n    s += i\ns > 0"


def calibrate(sb: Sandbox, target_ms: float) -> int:
    """Loop count for a call of about ``target_ms`` on this machine, measured in a session."""
    loops = 200_000
    with sb.open() as s:
        for _ in range(4):
            t = min(s.run(work_code(loops)).duration_s for _ in range(3)) * 1000
            loops = max(10_000, int(loops * target_ms / max(t, 0.1)))
    return loops


def time_calls(s: Any, code: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        r = s.run(code)
        if r.value != "True":
            raise RuntimeError(f"the timed call failed: {r.render()[:300]}")
        out.append(r.duration_s * 1000)
    return out


def measure(sb: Sandbox, code: str, burners: int, calls: int) -> dict[str, float]:
    """Idle latency of ``code`` in a tester session, then with ``burners`` burning sessions."""
    with sb.open() as tester:
        time_calls(tester, code, 2)  # warm
        idle = time_calls(tester, code, calls)
        hogs = [sb.open() for _ in range(burners)]
        try:
            for h in hogs:
                r = h.run(BURN)
                if r.value != "'burning'":
                    raise RuntimeError(f"could not start a burner: {r.render()[:300]}")
            time.sleep(0.5)  # let them spin up
            loaded = time_calls(tester, code, calls)
        finally:
            for h in hogs:
                h.close()
    return {"idle_ms": statistics.median(idle), "loaded_ms": statistics.median(loaded),
            "loaded_p90_ms": sorted(loaded)[int(0.9 * (len(loaded) - 1))],
            "slowdown": statistics.median(loaded) / statistics.median(idle)}


def bench_backend(name: str, burner_counts: list[int], calls: int, target_ms: float
                  ) -> dict[str, Any]:
    say(f"[{name}] starting two sandboxes: cpu_share=True and cpu_share=False")
    kw: dict[str, Any] = {"limits": LIMITS}
    if name != "docker":
        kw["spares"] = 1
    with make_sandbox(name, cpu_share=True, **kw) as on, \
            make_sandbox(name, cpu_share=False, **kw) as off:
        on.open().close()  # docker probes its features in the first container
        off.open().close()
        enforced = on.protections().cpu_share
        if not enforced:
            say(f"[{name}] the CPU share is not enforced here: "
                f"{getattr(on, 'cpu_reason', '?')}")
        loops = calibrate(on, target_ms)
        code = work_code(loops)
        say(f"[{name}] timed call: a {loops}-iteration loop (~{target_ms:g} ms idle)")
        rows = []
        for n in burner_counts:
            row: dict[str, Any] = {"burners": n}
            for label, sb in (("share", on), ("no_share", off)):
                say(f"[{name}] {n} burning sessions, {label.replace('_', ' ')}: "
                    f"{calls} idle calls, then {calls} with burners...")
                row[label] = measure(sb, code, n, calls)
                m = row[label]
                say(f"    idle {m['idle_ms']:.1f} ms, with burners {m['loaded_ms']:.1f} ms "
                    f"(p90 {m['loaded_p90_ms']:.1f}): x{m['slowdown']:.2f}")
            rows.append(row)
    return {"enforced": enforced, "loops": loops, "rows": rows}


def table(results: dict[str, Any]) -> str:
    header = (f"{'backend':<11} {'burners':>7}  {'idle ms':>8}  {'share: ms':>10} {'x idle':>7}"
              f"  {'no share: ms':>12} {'x idle':>7}  {'no share / share':>16}")
    lines = [header]
    for name, res in results.items():
        for row in res["rows"]:
            on, off = row["share"], row["no_share"]
            lines.append(
                f"{name:<11} {row['burners']:>7}  {on['idle_ms']:>8.1f}  {on['loaded_ms']:>10.1f} "
                f"{on['slowdown']:>7.2f}  {off['loaded_ms']:>12.1f} {off['slowdown']:>7.2f}  "
                f"{off['loaded_ms'] / on['loaded_ms']:>16.2f}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        xs = [r["burners"] for r in res["rows"]]
        width = 0.38
        pos = range(len(xs))
        ax.bar([p - width / 2 for p in pos], [r["share"]["slowdown"] for r in res["rows"]],
               width, label="with the CPU share")
        ax.bar([p + width / 2 for p in pos], [r["no_share"]["slowdown"] for r in res["rows"]],
               width, label="without (cpu_share=False)")
        ax.axhline(2.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(list(pos), [str(x) for x in xs])
        ax.set_xlabel(f"sessions with a busy background process ({os.cpu_count()} cores)")
        ax.set_ylabel("call latency / idle latency")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle("One session's call while other sessions burn the CPU in the background")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = os.cpu_count() or 1
    p.add_argument("--backends", default="local,bubblewrap,docker",
                   help="comma-separated backends to measure (unavailable ones are skipped)")
    p.add_argument("--burners", default=f"{cores + 1},{2 * cores},{4 * cores}",
                   help="comma-separated counts of burning sessions (default: cores+1, 2x, 4x)")
    p.add_argument("--calls", type=int, default=15, help="timed calls per measurement")
    p.add_argument("--work-ms", type=float, default=30.0, help="CPU time of the timed call")
    p.add_argument("--quick", action="store_true", help="fewer calls, one burner count")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).parent / "results" / "sandbox_cpu_share.png",
                   help="where to save the plot (numbers go next to it as .json)")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.burners.split(",") if x.strip()]
    calls = args.calls
    if args.quick:
        counts, calls = counts[:1], min(calls, 7)
    avail = available_backends()
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if avail.get(name, "unknown backend") is not None:
            say(f"[{name}] skipped: {avail.get(name, 'unknown backend')}")
            continue
        results[name] = bench_backend(name, counts, calls, args.work_ms)
    if not results:
        say("no backend available")
        return 1
    load = [round(x, 1) for x in (*load_before, *os.getloadavg())]
    say("\n" + table(results))
    say(f"\nthe machine's load average (1, 5, 15 min) before: {load[:3]}, after: {load[3:]} "
        f"on {cores} cores")
    say("\nx idle: median call latency with the burners / without them (the target is within "
        "~2x); no share / share: how much slower the call is without the CPU share.")
    args.out.with_suffix(".json").parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"cores": cores, "loadavg_before": load[:3], "loadavg_after": load[3:],
         "results": results}, indent=1))
    plot(results, args.out)
    say(f"\nplot: {args.out}\nnumbers: {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
