"""The full oracle sweep of every pinned eval suite: the lane the test suite samples from.

    python benchmarks/suite_sweep.py [SUITE ...] [--limit N] [--concurrency C]
                                     [--out benchmarks/results/suite_sweep.json]

For each pinned suite (default: all), runs every task once with the oracle policy and once
with its wrong twin through the real ``run_eval`` (envs, sandboxes, collector, bundle), then
verifies both bundles. A suite passes when the oracle scores >= 0.99, the wrong oracle
<= 0.01, no episode is excluded as infra and both bundles verify. Prints a table per suite
(tasks, accuracies, wall time, episodes per second) beside the sampled check the test suite
runs (``tests/agent_envs/eval/test_runner.py``, ``SWEEP_SAMPLE`` tasks per suite), with the
ratio of their costs, and exits 1 if any suite fails.

This is too slow for the per-commit suite on a 2-core machine (BFCL alone is 4,281 entries,
twice), so it is a lane of its own: run it after changing a verifier, an oracle or a task
generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.eval import EvalConfig, list_suites, official_manifest, run_eval, verify
from agent_envs.rollout import OraclePolicy
from tests.agent_envs.eval.test_runner import SWEEP_SAMPLE


def say(msg: str) -> None:
    print(msg, flush=True)


def sweep(suite: str, work: Path, limit: int | None, concurrency: int) -> dict[str, Any]:
    row: dict[str, Any] = {"suite": suite}
    for name, policy in (("oracle", OraclePolicy()), ("wrong", OraclePolicy(wrong=True))):
        t0 = time.perf_counter()
        b = run_eval(suite, policy, work / suite / name,
                     EvalConfig(trials=1, concurrency=concurrency, limit=limit,
                                progress=True))
        wall = time.perf_counter() - t0
        m = json.loads((b / "metrics.json").read_text())
        row[name] = {"accuracy": m["overall"]["accuracy"]["value"],
                     "tasks": m["overall"]["tasks"],
                     "excluded_infra": m["excluded_infra"]["count"],
                     "verify": verify(b), "wall_s": round(wall, 2)}
    o, w = row["oracle"], row["wrong"]
    row["tasks"] = o["tasks"]
    row["wall_s"] = round(o["wall_s"] + w["wall_s"], 2)
    row["episodes_per_s"] = round(2 * o["tasks"] / row["wall_s"], 2)
    row["passed"] = (o["accuracy"] is not None and o["accuracy"] >= 0.99
                     and w["accuracy"] is not None and w["accuracy"] <= 0.01
                     and o["excluded_infra"] == w["excluded_infra"] == 0
                     and not o["verify"] and not w["verify"])
    return row


def main(argv: list[str] | None = None) -> int:
    pinned = [s.name for s in list_suites() if s.pinned]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suites", nargs="*", help=f"pinned suites (default: all of {pinned})")
    ap.add_argument("--limit", type=int, default=None,
                    help="a seeded stratified sample of N tasks per suite (default: all)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/suite_sweep.json")
    args = ap.parse_args(argv)
    unknown = [s for s in args.suites if s not in pinned]
    if unknown:
        ap.error(f"not pinned suites: {unknown}; choose from {pinned}")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # checked before any compute

    rows = []
    with tempfile.TemporaryDirectory(prefix="suite-sweep-") as tmp:
        for suite in args.suites or pinned:
            n = len(official_manifest(suite).tasks)
            say(f"[sweep] {suite}: {min(n, args.limit or n)} of {n} tasks, oracle then wrong")
            rows.append(sweep(suite, Path(tmp), args.limit, args.concurrency))
    say("")
    say(f"{'suite':<16} {'tasks':>6} {'oracle':>7} {'wrong':>6} {'wall s':>8} {'ep/s':>6} "
        f"{'sample s*':>9} {'full/sample':>11}  verdict")
    for r in rows:
        # The in-suite check runs SWEEP_SAMPLE tasks of each suite at this suite's rate.
        sample_s = 2 * min(SWEEP_SAMPLE, r["tasks"]) / r["episodes_per_s"]
        say(f"{r['suite']:<16} {r['tasks']:>6} {r['oracle']['accuracy']:>7.3f} "
            f"{r['wrong']['accuracy']:>6.3f} {r['wall_s']:>8.1f} {r['episodes_per_s']:>6.1f} "
            f"{sample_s:>9.1f} {r['wall_s'] / sample_s:>10.1f}x  "
            f"{'pass' if r['passed'] else 'FAIL'}")
        for name in ("oracle", "wrong"):
            for problem in r[name]["verify"]:
                say(f"    {name} bundle: {problem}")
    say(f"* estimated cost of the test suite's sampled check ({SWEEP_SAMPLE} tasks per suite, "
        "oracle and wrong) at the same rate")
    out.write_text(json.dumps(rows, indent=1))
    say(f"wrote {out}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
