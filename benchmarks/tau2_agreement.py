"""Agreement with τ²'s evaluator over every task of every served domain.

    python benchmarks/tau2_agreement.py [DOMAIN ...] [--workers N]
                                        [--out benchmarks/results/tau2_agreement.json]

For each task (retail 114, airline 50, mock 9), plays the oracle's plan and each systematic
mutation that changes it (wrong argument, missing write, extra write, swapped writes, nothing
said to the user, τ²'s error limit) through the tau2 env against the scripted user, then scores
the recorded conversation with τ²'s own ``evaluate_simulation`` and compares its ``RewardInfo``
with ours, field for field (tests/agent_envs/tau2/agreement.py). Prints a table per domain:
cases, full agreement, reward agreement, named divergences, and the oracle's and the wrong
oracle's mean reward; lists every disagreement; exits 1 on any that is not a named divergence.
The test suite runs a seeded sample of the same cases (tests/agent_envs/tau2/test_agreement.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DOMAINS = ("retail", "airline", "mock")
_ENV: Any = None


def say(msg: str) -> None:
    print(msg, flush=True)


def _work(item: tuple[str, str, str]) -> dict[str, Any]:
    global _ENV
    from agent_envs.envs.tau2 import Tau2Env, Tau2Oracle
    from tests.agent_envs.tau2.agreement import run_case

    name, tid, case = item
    if _ENV is None or _ENV.task_source.domain != name:
        _ENV = Tau2Env(task_source=name)
    t0 = time.perf_counter()
    r = run_case(_ENV, tid, case)
    wrong = None
    if case == "oracle":  # the wrong oracle too: the suite's baseline must score 0
        obs, _ = _ENV.reset(options={"task_id": tid})
        oracle = Tau2Oracle(wrong=True)
        while True:
            obs, reward, term, trunc, _ = _ENV.step(oracle.act_text(obs, _ENV.task))
            if term or trunc:
                wrong = reward
                break
    return {"domain": name, "task_id": tid, "case": case, "termination": r.termination,
            "ours": r.ours["reward"], "theirs": None if r.theirs is None else r.theirs["reward"],
            "agree": r.agree, "divergence": r.divergence, "error": r.error,
            "diff": None if r.agree or r.theirs is None else sorted(
                k for k in r.ours if r.ours[k] != r.theirs.get(k)),
            "wrong_oracle": wrong, "seconds": round(time.perf_counter() - t0, 3)}


def _items(domains: list[str]) -> list[tuple[str, str, str]]:
    from agent_envs.envs.tau2 import Tau2Env
    from tests.agent_envs.tau2.agreement import cases_for

    items = []
    for name in domains:
        env = Tau2Env(task_source=name)
        for task in env.task_source:
            items += [(name, task.id, case) for case in cases_for(env, task.id)]
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("domains", nargs="*", help=f"domains (default: {', '.join(DOMAINS)})")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--out", default="benchmarks/results/tau2_agreement.json")
    args = ap.parse_args(argv)
    bad = [d for d in args.domains if d not in DOMAINS]
    if bad:
        ap.error(f"unknown domain(s) {bad}; choose from {list(DOMAINS)}")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    domains = args.domains or list(DOMAINS)
    items = _items(domains)
    say(f"[tau2-agreement] {len(items)} cases over {', '.join(domains)} "
        f"({args.workers} worker(s))")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for n, row in enumerate(pool.imap_unordered(_work, items, chunksize=4), 1):
            rows.append(row)
            if n % 25 == 0 or n == len(items):
                el = time.perf_counter() - t0
                say(f"  {n}/{len(items)} cases, {el:.0f} s, ~{el / n * (len(items) - n):.0f} s "
                    "left")
    wall = time.perf_counter() - t0
    say("")
    say(f"{'domain':<8} {'tasks':>5} {'cases':>6} {'RewardInfo =':>12} {'reward =':>9} "
        f"{'named':>6} {'other':>6} {'oracle':>7} {'wrong':>6}")
    failed = []
    summary = {}
    for name in domains:
        mine = [r for r in rows if r["domain"] == name]
        oracle = [r for r in mine if r["case"] == "oracle"]
        named = [r for r in mine if r["divergence"]]
        other = [r for r in mine if not r["agree"] and not r["divergence"]]
        failed += other
        s = {"tasks": len(oracle), "cases": len(mine),
             "reward_info_equal": sum(r["agree"] for r in mine),
             "reward_equal": sum(r["ours"] == r["theirs"] for r in mine),
             "named_divergences": len(named), "other_disagreements": len(other),
             "oracle_mean": sum(r["ours"] for r in oracle) / max(len(oracle), 1),
             "wrong_oracle_mean": sum(r["wrong_oracle"] for r in oracle) / max(len(oracle), 1),
             "by_case": {c: sum(1 for r in mine if r["case"] == c)
                         for c in sorted({r["case"] for r in mine})}}
        summary[name] = s
        say(f"{name:<8} {s['tasks']:>5} {s['cases']:>6} {s['reward_info_equal']:>12} "
            f"{s['reward_equal']:>9} {s['named_divergences']:>6} {s['other_disagreements']:>6} "
            f"{s['oracle_mean']:>7.3f} {s['wrong_oracle_mean']:>6.3f}")
    for r in sorted(rows, key=lambda r: (r["domain"], r["task_id"], r["case"])):
        if r["divergence"]:
            say(f"  named: {r['task_id']} {r['case']}: {r['divergence']} ({r['error']})")
    for r in failed:
        say(f"  DISAGREE: {r['task_id']} {r['case']}: ours {r['ours']}, τ² {r['theirs']} "
            f"{r['error'] or ''} fields {r['diff']}")
    say(f"wall {wall:.0f} s")
    out.write_text(json.dumps({"summary": summary, "wall_s": round(wall, 1),
                               "workers": args.workers, "cases": rows}, indent=1))
    say(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
