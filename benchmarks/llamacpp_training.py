"""Benchmark: GRPO on the tiny preset with llama.cpp as the sampler, correction on and off.

``configs/tiny-cpu.toml`` (a tiny random gpt-oss learns toy-digit: answer ``7``) run with
``rollout.sampler = "llamacpp"``: every step the trainer's weights are written into the
served GGUF and ``llama-server`` is restarted on it (``Trainer.sync_weights`` ->
``LlamaCppPolicy.load_weights``); sampling is restricted to the env's 11 tokens by a logit
bias, as the trainer restricts its log-probs. Arms:

* sampler ``transformers`` (the trainer's own model object: no mismatch; the baseline for
  step time);
* llama.cpp with the weights as F32 and as Q4_0 (``llama-quantize`` after each push: a
  deliberately larger mismatch), each with rollout correction off (``preset none``) and on
  (``token_tis``, the preset's default).

Per arm and seed it records the reward, the sampler/trainer KL (``rollout_corr/k3_kl``),
the fraction of tokens the correction touched (importance ratio outside [0.5, 2]:
``frac_above + frac_below``; ``token_tis`` caps those above 2), and the step time split
into rollout, update and weight push. It prints a table (mean +- std over seeds) with the
step time as a ratio to the transformers sampler, and saves
``benchmarks/results/llamacpp_training.png`` (reward and KL over steps) and ``.json``.

Run (needs ``bash scripts/build_llama_server.sh``)::

    python benchmarks/llamacpp_training.py                 # 5 arms x 3 seeds x 20 steps
    python benchmarks/llamacpp_training.py --steps 4 --seeds 0 --arms llamacpp-f32
    python benchmarks/llamacpp_training.py --resume     # finish an interrupted grid
    python benchmarks/llamacpp_training.py --merge a.json b.json  # runs made in parallel
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

#: arm -> (sampler, llama.cpp outtype, correction preset)
ARMS: dict[str, tuple[str, str | None, str]] = {
    "transformers": ("transformers", None, "token_tis"),
    "llamacpp-f32": ("llamacpp", "f32", "none"),
    "llamacpp-f32+tis": ("llamacpp", "f32", "token_tis"),
    "llamacpp-q4_0": ("llamacpp", "q4_0", "none"),
    "llamacpp-q4_0+tis": ("llamacpp", "q4_0", "token_tis"),
}
KEYS = ("reward/mean", "rollout_corr/k3_kl", "rollout_corr/frac_above",
        "rollout_corr/frac_below", "rollout_corr/logp_abs_diff_max", "perf/step_s",
        "perf/rollout_s", "perf/train_s", "perf/sync_s")


def run_arm(arm: str, seed: int, steps: int, out: Path, threads: int = 1
            ) -> list[dict[str, float]]:
    """Train one arm with one seed; returns the per-step metrics."""
    from trainers.config import load_config
    from trainers.train import Trainer

    sampler, outtype, preset = ARMS[arm]
    overrides = [f"steps={steps}", f"seed={seed}", f"rollout.sampler={sampler}",
                 f"correction.preset={preset}", f"logging.out_dir={out}",
                 "logging.tensorboard=false", "logging.progress=false",
                 "logging.console=false", "logging.plot=false", "checkpoint.every=0",
                 "checkpoint.save_final=false"]
    if outtype is not None:
        overrides.append(f'rollout.llamacpp_kwargs={{outtype="{outtype}", slots=8, '
                         f'threads={threads}}}')
    trainer = Trainer(load_config(ROOT / "configs" / "tiny-cpu.toml", overrides))
    try:
        history = trainer.train().history
    finally:
        trainer.close()
    return [{k: float(m.get(k, math.nan)) for k in ("step", *KEYS)} for m in history]


def _ms(values: list[float]) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "-"
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{mean:.3g}+-{std:.2g}"


def _step_s(hists: list[list[dict[str, float]]]) -> float:
    """Mean step seconds over runs (the first step, which loads everything, left out)."""
    return statistics.fmean(statistics.fmean(r["perf/step_s"] for r in h[1:] or h)
                            for h in hists)


def table(runs: dict[str, list[list[dict[str, float]]]],
          timing_base: list[list[dict[str, float]]] | None = None) -> list[dict[str, Any]]:
    """Print and return one row per arm (mean +- std over seeds).

    ``timing_base``: transformers runs made at the same time as the other arms, for the
    step-time ratio (on a shared machine, runs made at other times saw another load).
    """
    base = None
    if timing_base:
        base = _step_s(timing_base)
        print(f"step-time baseline: the transformers sampler run alongside the other arms "
              f"({base:.3g} s/step over {len(timing_base)} run(s))")
    elif "transformers" in runs:
        base = _step_s(runs["transformers"])
    rows = []
    head = (f"{'arm':<18} {'final reward':>14} {'mean reward':>14} {'KL k3 (mean)':>16} "
            f"{'KL k3 (max)':>14} {'touched':>14} {'step s':>13} {'x transf.':>9} "
            f"{'push s':>12}")
    print(head)
    print("-" * len(head))
    for arm, hists in runs.items():
        final = [h[-1]["reward/mean"] for h in hists]
        mean_r = [statistics.fmean(r["reward/mean"] for r in h) for h in hists]
        kl = [statistics.fmean(r["rollout_corr/k3_kl"] for r in h) for h in hists]
        kl_max = [max(r["rollout_corr/k3_kl"] for r in h) for h in hists]
        touched = [statistics.fmean(r["rollout_corr/frac_above"] + r["rollout_corr/frac_below"]
                                    for r in h) for h in hists]
        step = [statistics.fmean(r["perf/step_s"] for r in (h[1:] or h)) for h in hists]
        push = [statistics.fmean(r["perf/sync_s"] for r in h) for h in hists]
        ratio = statistics.fmean(step) / base if base else math.nan
        print(f"{arm:<18} {_ms(final):>14} {_ms(mean_r):>14} {_ms(kl):>16} {_ms(kl_max):>14} "
              f"{_ms(touched):>14} {_ms(step):>13} {ratio:>9.2f} {_ms(push):>12}")
        rows.append({"arm": arm, "final_reward": final, "mean_reward": mean_r, "kl_k3": kl,
                     "kl_k3_max": kl_max, "touched_frac": touched, "step_s": step,
                     "step_ratio_vs_transformers": ratio, "push_s": push})
    return rows


def plot(runs: dict[str, list[list[dict[str, float]]]], path: Path) -> None:
    """Reward and KL over steps: mean and min-max band over seeds, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("reward/mean", "reward", False), ("rollout_corr/k3_kl",
              "sampler-trainer KL per token (k3)", True), ("perf/step_s", "step seconds",
                                                           False))
    for ax, (key, title, log) in zip(axes, panels):
        for arm, hists in runs.items():
            y = np.array([[r[key] for r in h] for h in hists])
            x = np.arange(1, y.shape[1] + 1)
            if log:
                y = np.maximum(y, 1e-12)
            line, = ax.plot(x, y.mean(0), label=arm)
            ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.15)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("GRPO on tiny-cpu (toy-digit) with llama.cpp as the sampler, weights pushed "
                 "every step", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp CPU threads")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "llamacpp_training.png"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the (arm, seed) runs already in the JSON next to --out, run the "
                         "rest")
    ap.add_argument("--no-run", action="store_true",
                    help="run nothing: the table and plot of the saved (and --merge) runs")
    ap.add_argument("--timing-baseline", metavar="JSON",
                    help="the step-time ratio's baseline: the transformers runs in this "
                         "results file (run at the same time as the others on a shared box)")
    ap.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                    help="also keep the (arm, seed) runs of these results files (runs made in "
                         "parallel with their own --out); implies --resume")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    done: dict[str, dict[str, list[dict[str, float]]]] = {}
    if (args.resume or args.merge or args.no_run) and out.with_suffix(".json").is_file():
        done = json.loads(out.with_suffix(".json").read_text()).get("by_seed", {})
    for path in args.merge:
        for arm, seeds in json.loads(Path(path).read_text()).get("by_seed", {}).items():
            done.setdefault(arm, {}).update(seeds)
    runs: dict[str, list[list[dict[str, float]]]] = {}
    by_seed: dict[str, dict[str, list[dict[str, float]]]] = {
        arm: dict(seeds) for arm, seeds in done.items()}
    with tempfile.TemporaryDirectory(prefix="llamacpp-training-") as tmp:
        for arm in args.arms:
            for seed in args.seeds:
                if str(seed) in done.get(arm, {}):
                    runs.setdefault(arm, []).append(done[arm][str(seed)])
                    continue
                if args.no_run:
                    continue
                t1 = time.perf_counter()
                hist = run_arm(arm, seed, args.steps, Path(tmp) / f"{arm}-s{seed}",
                               args.threads)
                runs.setdefault(arm, []).append(hist)
                by_seed.setdefault(arm, {})[str(seed)] = hist
                out.parent.mkdir(parents=True, exist_ok=True)
                out.with_suffix(".json").write_text(json.dumps({"by_seed": by_seed}, indent=1))
                print(f"{arm} seed {seed}: reward {hist[-1]['reward/mean']:.3f}, "
                      f"KL k3 {hist[-1]['rollout_corr/k3_kl']:.2e} "
                      f"({time.perf_counter() - t1:.0f} s)", file=sys.stderr, flush=True)
    timing_base = None
    if args.timing_baseline:
        timing_base = list(json.loads(Path(args.timing_baseline).read_text())["by_seed"]
                           .get("transformers", {}).values())
        if not timing_base:
            ap.error(f"--timing-baseline {args.timing_baseline}: no transformers runs in it")
    rows = table(runs, timing_base)
    plot(runs, out)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "rows": rows, "by_seed": by_seed,
         "timing_baseline": timing_base,
         "seconds": time.perf_counter() - t0}, indent=1))
    print(f"\nplot: {out}  data: {out.with_suffix('.json')}  "
          f"({time.perf_counter() - t0:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
