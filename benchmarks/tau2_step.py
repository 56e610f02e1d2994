"""τ² step cost: a τ² function call through ``env.step`` vs a bare call of τ²'s tool.

    python benchmarks/tau2_step.py [--quick] [--steps N] [--out benchmarks/results/tau2_step.png]

Two retail tools (``get_order_details``: a small result; ``get_product_details``: a large
one) are called with the same arguments over and over, interleaved, in one process:

* ``bare``: the tool method of τ²'s toolkit (``RetailTools.get_order_details(order_id=...)``),
  returning its pydantic object;
* ``tau2 get_response``: what τ²'s own orchestrator does per call
  (``Environment.get_response(ToolCall)``: the call, ``sync_tools``, the result as JSON text);
* ``env.step``: the whole step of the tau2 env on the completion's token ids (parse the
  harmony completion, look the function up, τ²'s ``get_response``, record the call for the
  verifier and the export, render the tool message, build the observation).

Every 20 steps a new episode starts (a fresh database, not timed), so contexts stay short.
Prints p50/p90 per path and the ratios to the bare call, and saves a plot and the numbers as
JSON. A new episode's cost (its database) is printed as well: it is paid once per episode.
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

from agent_envs.envs.tau2 import Tau2Env
from agent_envs.harmony import get_codec

CALLS = {"get_order_details": {"order_id": "#W2378156"},
         "get_product_details": {"product_id": "1656367028"}}
STEPS_PER_EPISODE = 20


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(steps: int) -> dict[str, Any]:
    from tau2.data_model.message import ToolCall

    codec = get_codec()
    env = Tau2Env(task_source="retail")
    env.reset(options={"task_id": "retail_0"})
    tau2_env = env.episode.domain.new_environment()
    toolkit = tau2_env.tools
    actions = {name: codec.encode(f"<|channel|>commentary to=functions.{name} "
                                  f"<|constrain|>json<|message|>{json.dumps(args)}<|call|>")
               for name, args in CALLS.items()}
    times: dict[str, list[float]] = {}
    resets: list[float] = []
    pc = time.perf_counter
    progress_every = max(1, steps // 10)
    for i in range(steps):
        for name, args in CALLS.items():
            fn = getattr(toolkit, name)
            t0 = pc()
            fn(**args)
            times.setdefault(f"{name}: bare", []).append(pc() - t0)
            call = ToolCall(id="c", name=name, arguments=dict(args))
            t0 = pc()
            msg = tau2_env.get_response(call)
            times.setdefault(f"{name}: tau2 get_response", []).append(pc() - t0)
            assert not msg.error, msg.content
            t0 = pc()
            _, _, term, trunc, info = env.step(actions[name])
            times.setdefault(f"{name}: env.step", []).append(pc() - t0)
            assert info["tool_outcome"]["ok"] and env.episode.tau2_calls[-1].content == \
                msg.content, info
            if term or trunc:
                raise RuntimeError(f"the episode ended: {info['truncated_reason']}")
        if (i + 1) % STEPS_PER_EPISODE == 0:
            t0 = pc()
            env.reset(options={"task_id": "retail_0"})
            resets.append(pc() - t0)
        if (i + 1) % progress_every == 0:
            say(f"  {i + 1}/{steps} rounds")
    out: dict[str, Any] = {"steps": steps, "tools": CALLS,
                           "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    for name, xs in times.items():
        ms = [x * 1e3 for x in xs]
        out[name] = {"p50_ms": statistics.median(ms), "p90_ms": pct(ms, 0.9),
                     "mean_ms": statistics.fmean(ms)}
    out["reset (fresh retail database)"] = {
        "p50_ms": statistics.median([x * 1e3 for x in resets]) if resets else None,
        "episodes": len(resets)}
    return out


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in res if ":" in k]
    fig, ax = plt.subplots(figsize=(8.5, 4))
    p50 = [res[n]["p50_ms"] * 1e3 for n in names]
    p90 = [res[n]["p90_ms"] * 1e3 for n in names]
    ax.barh(names, p90, color="#cccccc", label="p90")
    ax.barh(names, p50, color="#4c72b0", label="p50")
    for y, (n, v) in enumerate(zip(names, p50)):
        bare = res[n.split(":")[0] + ": bare"]["p50_ms"] * 1e3
        ax.text(v, y, f" {v:.0f} us ({v / bare:.0f}x bare)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per call (log)")
    ax.set_title("tau2 retail: a call through env.step vs τ²'s tool called bare")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="rounds (each calls both tools)")
    ap.add_argument("--quick", action="store_true", help="200 rounds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tau2_step.png"))
    a = ap.parse_args()
    if a.steps < 1:
        ap.error(f"--steps must be >= 1, got {a.steps}")
    steps = 200 if a.quick else a.steps
    say(f"tau2 retail: {steps} interleaved rounds of {', '.join(CALLS)}")
    res = measure(steps)
    say(f"\n{'path':<40} {'p50 us':>9} {'p90 us':>9} {'x bare':>8} {'overhead us':>12}")
    for name in [k for k in res if ":" in k]:
        m = res[name]
        bare = res[name.split(":")[0] + ": bare"]["p50_ms"]
        say(f"{name:<40} {m['p50_ms'] * 1e3:9.1f} {m['p90_ms'] * 1e3:9.1f} "
            f"{m['p50_ms'] / bare:8.1f} {(m['p50_ms'] - bare) * 1e3:12.1f}")
    r = res["reset (fresh retail database)"]
    if r["p50_ms"] is not None:
        say(f"{'reset (fresh retail database), once per episode':<40} "
            f"{r['p50_ms'] * 1e3:9.0f}")
    plot(res, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    say(f"(load average {res['load_average_1m']} on {res['cpus']} CPUs while measuring)")
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
