"""Env server overhead: a step over ``agent-envs serve`` (loopback) vs the same step in-process.

    python benchmarks/env_server.py [--quick] [--steps N] [--sizes 1000,8000,32000]
                                    [--out benchmarks/results/env_server.png] [--replot]
    python benchmarks/env_server.py --load [...]   # the load test: see env_server_load.py

``--load`` runs the load test instead (:mod:`benchmarks.env_server_load`): python-tool
sessions ramped 256 -> 4,096 on one server and in-process, bursts and steady state, errors by
kind, memory per session, latency percentiles, with a plot; it stops by itself.

For each env (``toy-digit``; ``python-tool`` with the ``local`` sandbox) a server runs in a
subprocess (``agent-envs serve ENV --port 0``) and this process holds two envs: one made
in-process (``agent_envs.make``) and one ``agent_envs.remote`` session on the server. Both
are reset with the same seed, grown to the context size (one long analysis message), then
stepped with the same action, interleaved step by step so machine noise hits both:

* toy-digit: a cut completion (one digit, no stop token; the env appends a notice), on its
  own short context (its prefilled final channel takes no filler);
* python-tool: a ``print(1)`` call as token ids (the sandbox runs it).

Every remote observation is checked equal to the in-process one. The remote step's time is
the full round trip (JSON, WebSocket, the server's thread hop, the delta and its prefix hash
on both sides). Prints p50/p95 of both, their ratio and the added milliseconds, and saves a
plot and the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent_envs
from agent_envs.harmony import get_codec

ROOT = Path(__file__).resolve().parents[1]
CODEC = get_codec()
STEPS_PER_EPISODE = 20
ENVS: dict[str, dict[str, Any]] = {
    "toy-digit": {"kwargs": {"max_turns": STEPS_PER_EPISODE + 5}, "action": CODEC.encode("4")},
    "python-tool": {"kwargs": {"sandbox": "local", "max_turns": STEPS_PER_EPISODE + 5},
                    "action": CODEC.encode("<|channel|>analysis to=python code<|message|>"
                                           "print(1)<|call|>")},
}


def say(msg: str) -> None:
    print(msg, flush=True)


#: The server runs with a token, as a real one should (its check is part of the round trip
#: only at connect; every step pays for the observation's decoded text and its redaction).
TOKEN = secrets.token_hex(16)


def start_server(env_id: str, kwargs: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    args = [a for k, v in kwargs.items() for a in ("--env-arg", f"{k}={json.dumps(v)}")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_envs.cli", "serve", env_id, "--port", "0",
         "--token", TOKEN, *args],
        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = ""
    while not line.startswith("serving") and (more := proc.stdout.readline()):
        line = more  # skip warnings printed before the banner
    m = re.search(r"on (http://\S+) ", line)
    if m is None:
        proc.kill()
        raise RuntimeError(f"agent-envs serve {env_id} did not start: {line}")
    return proc, m.group(1)


def grow(env: Any, seed: int, size: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    need = size - len(obs) - 8
    if need > 0:
        filler = CODEC.encode(" word" * need)[:need]
        obs, *_ = env.step(CODEC.encode("<|channel|>analysis<|message|>") + filler
                           + CODEC.encode("<|end|>"))
    return obs


def measure(env_id: str, size: int, steps: int) -> dict[str, Any]:
    spec = ENVS[env_id]
    proc, url = start_server(env_id, spec["kwargs"])
    try:
        extra = {"max_tokens": size + 50_000}
        local = agent_envs.make(env_id, **spec["kwargs"], **extra)
        remote = agent_envs.remote(url, env_id, token=TOKEN, **extra)
        times: dict[str, list[float]] = {"local": [], "remote": []}
        done, seed, context = 0, 0, []
        grow(local, 999, size)  # warm-up: sandbox zygote, server session, caches
        grow(remote, 999, size)
        while done < steps:
            lo, ro = grow(local, seed, size), grow(remote, seed, size)
            assert np.array_equal(lo, ro), "remote and in-process observations differ"
            for _ in range(STEPS_PER_EPISODE):
                t0 = time.perf_counter()
                lo, lr, lte, ltr, _ = local.step(spec["action"])
                t1 = time.perf_counter()
                ro, rr, rte, rtr, _ = remote.step(spec["action"])
                t2 = time.perf_counter()
                assert np.array_equal(lo, ro) and (lr, lte, ltr) == (rr, rte, rtr)
                times["local"].append(t1 - t0)
                times["remote"].append(t2 - t1)
                context.append(len(lo))
                done += 1
                if lte or ltr:
                    break
            seed += 1
        local.close()
        remote.close()
    finally:
        proc.kill()
        proc.wait()
    out: dict[str, Any] = {"env": env_id, "size": size, "steps": done,
                           "context": float(np.median(context))}
    for k, v in times.items():
        out[k] = {"p50_ms": float(np.percentile(v, 50)) * 1e3,
                  "p95_ms": float(np.percentile(v, 95)) * 1e3}
    for q in ("p50", "p95"):
        out[f"ratio_{q}"] = out["remote"][f"{q}_ms"] / out["local"][f"{q}_ms"]
        out[f"added_{q}_ms"] = out["remote"][f"{q}_ms"] - out["local"][f"{q}_ms"]
    say(f"  {env_id:<12} {size:>6} tokens: {done} steps, remote p50 "
        f"{out['remote']['p50_ms']:.3f} ms vs in-process {out['local']['p50_ms']:.3f} ms")
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    x = np.arange(len(results))
    w = 0.2
    for i, (side, q, color) in enumerate([("local", "p50", "#4c72b0"), ("local", "p95", "#a1b9e0"),
                                          ("remote", "p50", "#dd8452"),
                                          ("remote", "p95", "#f1c1a0")]):
        vals = [r[side][f"{q}_ms"] for r in results]
        ax.bar(x + (i - 1.5) * w, vals, w, color=color,
               label=f"{'in-process' if side == 'local' else 'over the server'} {q}")
    top = max(max(r["remote"]["p95_ms"], r["local"]["p95_ms"]) for r in results)
    low = min(min(r["remote"]["p50_ms"], r["local"]["p50_ms"]) for r in results)
    for xi, r in zip(x, results, strict=True):
        ax.text(xi, top * 1.5, f"server / in-process\nx{r['ratio_p50']:.1f} p50, "
                f"x{r['ratio_p95']:.1f} p95", ha="center", fontsize=8)
    ax.set_xticks(x, [f"{r['env']}\n{int(r['context'])} tokens" for r in results])
    ax.set_ylabel("ms per step")
    ax.set_yscale("log")
    ax.set_ylim(low / 2, top * 6)
    ax.set_title("env.step over agent-envs serve (loopback WebSocket) vs in-process")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    if "--load" in sys.argv[1:]:
        from benchmarks import env_server_load

        sys.exit(env_server_load.main([a for a in sys.argv[1:] if a != "--load"]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,8000,32000")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--envs", default="toy-digit,python-tool")
    ap.add_argument("--quick", action="store_true", help="100 steps per case")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/env_server.png"))
    ap.add_argument("--replot", action="store_true", help="redraw the plot from the JSON")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads(a.out.with_suffix(".json").read_text())["results"], a.out)
        return
    steps = 100 if a.quick else a.steps
    load0 = os.getloadavg()[0]
    say(f"env step over agent-envs serve (loopback) vs in-process, {steps} steps per case; "
        f"{os.cpu_count()} CPUs, load average {load0:.1f}")
    # toy-digit's prefilled final channel cannot hold a filler message: its own context only
    results = [measure(env_id, int(size), steps) for env_id in a.envs.split(",")
               for size in (a.sizes.split(",") if env_id == "python-tool" else ["0"])]
    say("\nenv           context | in-process p50   p95 | server p50    p95 | ratio p50  p95"
        " | added p50 ms")
    for r in results:
        say(f"{r['env']:<12} {int(r['context']):>8} | {r['local']['p50_ms']:9.3f} "
            f"{r['local']['p95_ms']:6.3f} | {r['remote']['p50_ms']:9.3f} "
            f"{r['remote']['p95_ms']:6.3f} | {r['ratio_p50']:7.1f}x {r['ratio_p95']:4.1f}x |"
            f" {r['added_p50_ms']:8.3f}")
    plot(results, a.out)
    load1 = os.getloadavg()[0]
    say(f"load average {load0:.1f} at the start, {load1:.1f} at the end (the server process "
        "competes for the CPUs: a busy machine adds scheduling delay to every round trip)")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"cpus": os.cpu_count(), "load_avg_start": load0, "load_avg_end": load1,
         "results": results}, indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
