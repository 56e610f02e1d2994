"""Rollout throughput: episodes/s and env steps/s of the collector with the oracle policy.

Runs the python-tool env with ``OraclePolicy`` (no model: this measures the
envs, the sandbox and the collector) at several concurrency levels, on the
local backend and optionally on Ray, and reports for each level:

- episodes/s and env steps/s (model turns per second of wall time);
- where an episode's time goes: share in env code (reset/step, including tool
  calls) versus waiting on the policy (batching window plus sampling);
- mean policy batch size.

Usage::

    python benchmarks/rollout_throughput.py                       # local, 1..256
    python benchmarks/rollout_throughput.py --levels 1 4 16 --ray --out bench.png

Prints a table and saves a PNG plot (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig


def measure(concurrency: int, *, backend: str, episodes: int, ray_workers: int,
            seed: int) -> dict[str, Any]:
    """One run at ``concurrency``; returns the row of the table."""
    cfg = RolloutConfig(env_id="python-tool", num_groups=episodes, group_size=1,
                        concurrency=concurrency, max_batch_size=max(1, concurrency),
                        backend=backend, ray_workers=ray_workers, seed=seed, progress=False)  # type: ignore[arg-type]
    collector = RolloutCollector(OraclePolicy(), cfg)
    t0 = time.perf_counter()
    eps = collector.collect()
    wall = time.perf_counter() - t0
    steps = sum(len(e.turns) for e in eps)
    env_s = sum(e.env_s for e in eps)
    pol_s = sum(e.policy_s for e in eps)
    busy = env_s + pol_s
    return {
        "backend": backend, "concurrency": concurrency, "episodes": len(eps),
        "solved": sum(e.solved for e in eps), "infra": sum(e.infra for e in eps),
        "wall_s": round(wall, 3), "episodes_per_s": round(len(eps) / wall, 2),
        "steps_per_s": round(steps / wall, 2),
        "env_share": round(env_s / busy, 3) if busy else 0.0,
        "policy_share": round(pol_s / busy, 3) if busy else 0.0,
        "mean_batch": round(steps / max(1, collector.stats.get("batches", 1)), 2),
    }


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Episodes/s and env share against concurrency, one line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for backend in sorted({r["backend"] for r in rows}):
        rs = [r for r in rows if r["backend"] == backend]
        xs = [r["concurrency"] for r in rs]
        a.plot(xs, [r["episodes_per_s"] for r in rs], marker="o", label=f"{backend} episodes/s")
        a.plot(xs, [r["steps_per_s"] for r in rs], marker="x", ls="--",
               label=f"{backend} steps/s")
        b.plot(xs, [r["env_share"] for r in rs], marker="o", label=f"{backend}: in env code")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent episodes")
        ax.grid(alpha=0.3)
        ax.legend()
    a.set_ylabel("per second (oracle policy)")
    b.set_ylabel("share of episode time in env code")
    b.set_ylim(0, 1)
    fig.suptitle("python-tool rollout throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64, 256],
                    help="concurrency levels")
    ap.add_argument("--episodes-per-level", type=int, default=0,
                    help="episodes per level (default: max(16, 2 x concurrency))")
    ap.add_argument("--ray", action="store_true", help="also measure backend='ray'")
    ap.add_argument("--ray-workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="rollout_throughput.png", help="PNG plot path")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    backends = ["local"] + (["ray"] if args.ray else [])
    rows = []
    header = (f"{'backend':8} {'conc':>5} {'eps':>5} {'solved':>6} {'infra':>5} {'wall s':>8} "
              f"{'ep/s':>7} {'steps/s':>8} {'env%':>6} {'policy%':>8} {'batch':>6}")
    print(header)
    for backend in backends:
        for c in args.levels:
            n = args.episodes_per_level or max(16, 2 * c)
            r = measure(c, backend=backend, episodes=n, ray_workers=args.ray_workers,
                        seed=args.seed)
            rows.append(r)
            print(f"{backend:8} {c:>5} {r['episodes']:>5} {r['solved']:>6} {r['infra']:>5} "
                  f"{r['wall_s']:>8.2f} {r['episodes_per_s']:>7.2f} {r['steps_per_s']:>8.2f} "
                  f"{100 * r['env_share']:>5.1f}% {100 * r['policy_share']:>7.1f}% "
                  f"{r['mean_batch']:>6.1f}", flush=True)
    plot(rows, args.out)
    print(f"plot: {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
