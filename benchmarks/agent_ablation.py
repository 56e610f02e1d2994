"""Do the multi-tool tasks need both tools? The oracle with both, and denied each one.

    python benchmarks/agent_ablation.py [--per-difficulty 20] [--quick]
                                        [--out benchmarks/results/agent_ablation.png]

For each multi-tool family (``research``: browser + python; ``dataops``: developer
functions + python) and difficulty 1..5, runs the oracle (``agent_envs.oracle.Oracle``)
on the first N test-split tasks through ``agent-v0`` three times: with both tools, and with
each tool left out of ``tools``. Denied a tool, the env answers its calls with "there is no
tool ..." and the oracle goes on as a model would: without the browser or the functions it
has no data and answers with an estimate; without python it adds up by hand, exactly only
when there are at most ``BY_HAND_NUMBERS`` numbers, else from values rounded to two
significant figures. Prints the solve rates side by side (and the ratio both/denied),
saves a plot and the numbers as JSON. Everything runs for real: sandbox sessions, the
browser over the world's corpus, the functions runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent_envs
from agent_envs.envs.agent.oracle import BY_HAND_NUMBERS
from agent_envs.oracle import Oracle

FAMILIES = {"research": ("python", "browser"), "dataops": ("python", "functions")}


def say(msg: str) -> None:
    print(msg, flush=True)


def solve_rate(tools: tuple[str, ...], family: str, difficulty: int, n: int,
               sandbox: str) -> dict[str, Any]:
    env = agent_envs.make("agent", tools=list(tools), tasks=family, difficulty=difficulty,
                          split="test", **({"sandbox": sandbox} if "python" in tools else {}))
    oracle = Oracle()
    solved, turns, calls, t0 = 0, 0, 0, time.perf_counter()
    try:
        for seed in range(n):
            obs, info = env.reset(seed=seed)
            while True:
                obs, reward, term, trunc, info = env.step(oracle.act(obs, env.task))
                if term or trunc:
                    break
            if info["infra_error"]:
                raise RuntimeError(f"infra error in {info['task_id']}: {info['infra_error']}")
            solved += reward == 1.0
            turns += info["turn"]
            calls += info["tool_calls"]
    finally:
        env.close()
    return {"tools": list(tools), "family": family, "difficulty": difficulty, "tasks": n,
            "solved": solved, "rate": solved / n, "mean_turns": turns / n,
            "mean_tool_calls": calls / n, "seconds": time.perf_counter() - t0}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (family, both) in zip(axes, FAMILIES.items()):
        configs = [both] + [tuple(t for t in both if t != left) for left in both]
        labels = ["both"] + [f"no {left}" for left in both]
        width = 0.8 / len(configs)
        for k, (cfg, label) in enumerate(zip(configs, labels)):
            ys = [next(r["rate"] for r in rows if r["family"] == family
                       and r["difficulty"] == d and tuple(r["tools"]) == cfg)
                  for d in range(1, 6)]
            ax.bar([d + (k - 1) * width for d in range(1, 6)], [100 * y for y in ys],
                   width=width, label=label)
        ax.set_title(f"{family}: tools {' + '.join(both)}")
        ax.set_xlabel("difficulty")
        ax.set_xticks(range(1, 6))
        ax.legend(fontsize=8)
    axes[0].set_ylabel("oracle solve rate (%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-difficulty", type=int, default=20, help="tasks per difficulty")
    ap.add_argument("--quick", action="store_true", help="4 tasks per difficulty")
    ap.add_argument("--sandbox", default="auto")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/agent_ablation.png"))
    a = ap.parse_args()
    n = 4 if a.quick else a.per_difficulty
    say(f"oracle on {n} test tasks per difficulty, with both tools and denied each "
        f"(by hand: exact up to {BY_HAND_NUMBERS} numbers)")
    rows = []
    for family, both in FAMILIES.items():
        for d in range(1, 6):
            for cfg in [both] + [tuple(t for t in both if t != left) for left in both]:
                r = solve_rate(cfg, family, d, n, a.sandbox)
                rows.append(r)
                say(f"  {family:<9} d{d} tools {'+'.join(cfg):<17} solved {r['solved']:>3}/{n}"
                    f"  ({r['mean_tool_calls']:.1f} calls/episode, {r['seconds']:.1f} s)")
    say("\nsolve rate   family     d   both   " + "   ".join(
        f"{'no ' + t:<12}" for t in ("python", "data tool")) + "   both / best denied")
    for family, both in FAMILIES.items():
        for d in range(1, 6):
            def rate(cfg: tuple[str, ...]) -> float:
                return next(r["rate"] for r in rows if r["family"] == family
                            and r["difficulty"] == d and tuple(r["tools"]) == cfg)
            full = rate(both)
            no_python = rate(tuple(t for t in both if t != "python"))
            no_data = rate(("python",))
            best = max(no_python, no_data)
            ratio = "inf" if best == 0 else f"{full / best:.1f}x"
            say(f"             {family:<9} {d}  {100 * full:5.1f}%  {100 * no_python:5.1f}%"
                f"{'':7}{100 * no_data:5.1f}%{'':8}{ratio}")
    plot(rows, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
