"""Tables and figures of ``benchmarks/rollout_correction.py`` (the runs are there).

Per run, :func:`summarize` reduces the per-step metrics to the numbers the tables show; per
arm (or sweep setting) they are reported as mean ± standard error over seeds. A run "blows
up" (:data:`BLOWUP`) if its sampler/trainer KL grows 10x above its step-1 value, its entropy
climbs back 0.5 nats above its lowest point, or its grad norm grows 10x above step 1.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BLOWUP", "HEADLINE_ARMS", "HEADLINE_PANELS", "PANELS", "difference", "exploded", "grid_rows", "level_title", "markdown_tables",
    "mean_se", "plot_grid", "plot_sweep", "print_grid_table", "print_no_mismatch_check",
    "print_sweep_table", "summarize", "sweep_rows",
]

#: panels of the grid figure: (metric key, title, log y axis)
PANELS: tuple[tuple[str, str, bool], ...] = (
    ("reward/mean", "reward (fraction of positions right)", False),
    ("rollout_corr/k3_kl", "sampler-trainer KL per token (k3)", True),
    ("bench/sampler_entropy", "sampler entropy per token (nats)", False),
    ("grad/norm_max", "max grad norm (pre-clip)", True),
    ("rollout_corr/rejected_token_frac", "rejected token fraction", False),
)

#: The headline figure: the reference arms and the two best corrections, on three panels.
HEADLINE_ARMS = ("no_mismatch", "none", "none_bypass", "token_tis", "icepop")
HEADLINE_PANELS = PANELS[:3]


def summarize(history: Sequence[dict[str, float]], learned_at: float) -> dict[str, float]:
    """One run's numbers: final reward (mean of the last 5 steps), mean reward over all
    steps (learning speed), learned (final >= ``learned_at``), peak reward (the best mean
    of 5 consecutive steps) and the drop from it to the final reward (a run that learned
    and then collapsed), KL (k3, per token) at step 1 /
    max / final and its largest rebound (max over steps of KL / its lowest value so far),
    max grad norm, mean rejected fraction, sampler entropy at step 1 / final / its largest
    rebound (the most it rose above its lowest value so far)."""
    last = history[-5:]

    def col(key: str, rows: Sequence[dict[str, float]]) -> list[float]:
        return [float(h[key]) for h in rows if key in h and math.isfinite(float(h[key]))]

    ent = col("bench/sampler_entropy", history)
    rebound = max((e - min(ent[:i + 1]) for i, e in enumerate(ent)), default=math.nan)
    kls = [max(k, 1e-12) for k in col("rollout_corr/k3_kl", history)]
    kl_rebound = max((k / min(kls[:i + 1]) for i, k in enumerate(kls)), default=math.nan)
    final = statistics.fmean(col("reward/mean", last))
    rewards = col("reward/mean", history)
    peak = max((statistics.fmean(rewards[i:i + 5]) for i in range(max(len(rewards) - 4, 1))),
               default=math.nan)
    return {
        "final_reward": final,
        "mean_reward": statistics.fmean(col("reward/mean", history)),
        "learned": float(final >= learned_at),
        "peak_reward": peak,
        "reward_drop": max(peak - final, 0.0),
        "initial_kl": float(history[0].get("rollout_corr/k3_kl", math.nan)),
        "max_kl": max(col("rollout_corr/k3_kl", history), default=math.nan),
        "final_kl": statistics.fmean(col("rollout_corr/k3_kl", last) or [math.nan]),
        "kl_rebound": kl_rebound,
        "initial_grad_norm": float(history[0].get("grad/norm_max", math.nan)),
        "max_grad_norm": max(col("grad/norm_max", history), default=math.nan),
        "rejected_token_frac": statistics.fmean(col("rollout_corr/rejected_token_frac", history)
                                                or [math.nan]),
        "initial_entropy": ent[0] if ent else math.nan,
        "final_entropy": statistics.fmean(col("bench/sampler_entropy", last) or [math.nan]),
        "entropy_rebound": rebound,
    }


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of the finite ``values`` (se 0 for one value)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), se


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), its standard error): the two arms' seeds are independent runs."""
    (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
    return ma - mb, math.hypot(sa, sb)


def exploded(s: dict[str, float]) -> list[str]:
    """What blew up in one run (see :data:`BLOWUP`), as words."""
    out = []
    if s["max_kl"] >= BLOWUP["kl_growth"] * max(s["initial_kl"], 1e-12):
        out.append(f"KL x{s['max_kl'] / max(s['initial_kl'], 1e-12):.0f}")
    if s["entropy_rebound"] >= BLOWUP["entropy_rebound"]:
        out.append(f"entropy +{s['entropy_rebound']:.2f}")
    if s["max_grad_norm"] >= BLOWUP["grad_growth"] * max(s["initial_grad_norm"], 1e-12):
        out.append(f"|g| x{s['max_grad_norm'] / max(s['initial_grad_norm'], 1e-12):.0f}")
    return out


#: A run "blows up" if its sampler/trainer KL grows 10x above its step-1 value, its entropy
#: climbs back 0.5 nats above its lowest point, or its grad norm grows 10x above step 1.
BLOWUP = {"kl_growth": 10.0, "entropy_rebound": 0.5, "grad_growth": 10.0}


def _cell(v: tuple[float, float], fmt: str) -> str:
    return f"{v[0]:{fmt}}±{v[1]:{fmt}}"


def print_grid_table(rows: dict[str, dict[str, dict[str, Any]]], n_seeds: int,
                     titles: dict[str, str]) -> None:
    """One table per mismatch level (``titles``: its heading): mean ± s.e. over seeds per arm."""
    for regime, arms in rows.items():
        print(f"\n{titles[regime]}; mean ± s.e. over {n_seeds} seeds; 'learned': "
              f"seeds whose final reward >= the --learned-at threshold; 'vs none': "
              f"mean-reward difference ± s.e. (* beyond 2 s.e.)")
        header = (f"{'arm':<18} {'final reward':>13} {'mean reward':>13} {'learned':>7} "
                  f"{'peak-final':>12} "
                  f"{'max KL':>17} {'max |g|':>11} {'rejected':>12} {'entropy':>12} "
                  f"{'vs none':>15}")
        print(header)
        print("-" * len(header))
        for arm, r in arms.items():
            d, se = r["vs_none"]
            vs = "" if arm == "none" or not math.isfinite(d) else \
                f"{d:+.3f}±{se:.3f}{'*' if abs(d) > 2 * se else ' '}"
            print(f"{arm:<18} {_cell(r['final_reward'], '.3f'):>13} "
                  f"{_cell(r['mean_reward'], '.3f'):>13} "
                  f"{round(r['learned'][0] * n_seeds):>4}/{n_seeds:<2} "
                  f"{_cell(r['reward_drop'], '.2f'):>12} "
                  f"{_cell(r['max_kl'], '.1e'):>17} {_cell(r['max_grad_norm'], '.2f'):>11} "
                  f"{_cell(r['rejected_token_frac'], '.3f'):>12} "
                  f"{_cell(r['final_entropy'], '.3f'):>12} {vs:>15}")


def print_no_mismatch_check(rows: dict[str, dict[str, dict[str, Any]]], trivial: float
                            ) -> None:
    """Is the task learnable here? ``no_mismatch``'s final reward per seed vs the trivial line."""
    for level, arms in rows.items():
        if "no_mismatch" in arms:
            finals = arms["no_mismatch"]["per_seed"]["final_reward"]
            print(f"{level}: no_mismatch final reward per seed {[round(f, 3) for f in finals]}; "
                  f"lowest {min(finals):.3f} vs trivial policies {trivial:.3f} "
                  f"({min(finals) / trivial:.1f}x)")


def level_title(level: str, arms: dict[str, dict[str, Any]],
                scales: dict[str, float] | None = None) -> str:
    """``gross mismatch (head gain 2, sink scale 30, attention gain 3): per-token KL at step 1
    ~ 3e-2`` (``scales``: the level's init scales, if known)."""
    kl0 = arms.get("none", next(iter(arms.values())))["initial_kl"][0]
    how = "" if scales is None else (f" (head gain {scales['head_gain']:g}, sink scale "
                                     f"{scales['sink_scale']:g}, attention gain "
                                     f"{scales['attn_gain']:g})")
    return f"{level} mismatch{how}: per-token KL at step 1 ~ {kl0:.1e}"


def grid_rows(runs: dict[str, dict[str, list[list[dict[str, float]]]]], learned_at: float
              ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and arm: every summary metric as (mean, s.e.), the per-seed values, and the
    mean reward's difference from ``none``."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for regime, arms in runs.items():
        per_seed = {arm: [summarize(h, learned_at) for h in seeds] for arm, seeds in arms.items()}
        rows[regime] = {}
        for arm, sums in per_seed.items():
            row: dict[str, Any] = {k: mean_se([s[k] for s in sums]) for k in sums[0]}
            row["per_seed"] = {k: [s[k] for s in sums] for k in ("final_reward", "mean_reward")}
            row["vs_none"] = difference([s["mean_reward"] for s in sums],
                                        [s["mean_reward"] for s in per_seed["none"]]) \
                if "none" in per_seed else (math.nan, math.nan)
            rows[regime][arm] = row
    return rows


def sweep_rows(results: dict[str, dict[str, list[list[dict[str, float]]]]], learned_at: float
               ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per sweep setting and arm: the summary metrics (mean, s.e.) and what blew up, per seed."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for setting, arms in results.items():
        rows[setting] = {}
        for arm, seeds in arms.items():
            sums = [summarize(h, learned_at) for h in seeds]
            row: dict[str, Any] = {k: mean_se([s[k] for s in sums]) for k in sums[0]}
            row["blowups"] = [exploded(s) for s in sums]
            rows[setting][arm] = row
    return rows


def markdown_tables(saved: dict[str, Any]) -> str:
    """The saved JSON's tables in Markdown (``--replot --markdown``), for the docs."""
    rows, out = saved["summary"], []

    def c(v: Sequence[float], fmt: str) -> str:
        return f"{v[0]:{fmt}} ± {v[1]:{fmt}}"

    if saved["mode"] == "grid":
        for level, arms in rows.items():
            n = len(next(iter(arms.values()))["per_seed"]["final_reward"])
            out += [f"**{saved['columns'].get(level, level)}** ({n} seeds, mean ± s.e.)", "",
                    ("| arm | final reward | mean reward | learned | peak − final | max KL | "
                     "max \\|g\\| | rejected | final entropy | mean reward vs none |"),
                    "|---" * 10 + "|"]
            for arm, r in arms.items():
                d, se = r["vs_none"]
                vs = "" if arm == "none" or d is None else \
                    f"{d:+.3f} ± {se:.3f}{' (> 2 s.e.)' if abs(d) > 2 * se else ''}"
                out.append(f"| `{arm}` | {c(r['final_reward'], '.3f')} | "
                           f"{c(r['mean_reward'], '.3f')} | {round(r['learned'][0] * n)}/{n} | "
                           f"{c(r['reward_drop'], '.2f')} | "
                           f"{r['max_kl'][0]:.1e} | {r['max_grad_norm'][0]:.2f} | "
                           f"{r['rejected_token_frac'][0]:.3f} | {r['final_entropy'][0]:.3f} | "
                           f"{vs} |")
            out.append("")
    else:
        out += [("| setting | arm | KL step 1 | max KL | max / step 1 | entropy step 1 → final "
                 "(rebound) | max \\|g\\| | peak − final | final reward | blew up |"),
                "|---" * 10 + "|"]
        for setting, arms in rows.items():
            for arm, r in arms.items():
                blew = [b for b in r["blowups"] if b]
                what = f"{len(blew)}/{len(r['blowups'])}" + \
                    (f" ({'; '.join(blew[0])})" if blew else "")
                what = what.replace("|", "\\|")  # |g| inside a table cell
                out.append(f"| {setting} | `{arm}` | {r['initial_kl'][0]:.1e} | "
                           f"{r['max_kl'][0]:.1e} | x{_growth(r):.0f} | "
                           f"{r['initial_entropy'][0]:.2f} → {r['final_entropy'][0]:.2f} "
                           f"(+{r['entropy_rebound'][0]:.2f}) | {r['max_grad_norm'][0]:.3g} | "
                           f"{r['reward_drop'][0]:.2f} | {c(r['final_reward'], '.3f')} | "
                           f"{what} |")
    return "\n".join(out)


def _growth(r: dict[str, Any]) -> float:
    """How far the sampler/trainer KL grew: max KL / KL at step 1 (means over seeds)."""
    return r["max_kl"][0] / r["initial_kl"][0] if r["initial_kl"][0] > 0 else math.nan


def print_sweep_table(rows: dict[str, dict[str, dict[str, Any]]], n_seeds: int) -> None:
    """One row per (setting, arm): KL at step 1 and max, entropy start/final/rebound, grad
    norm, final reward, and the seeds that blew up."""
    print(f"\nexplosion sweep; mean ± s.e. over {n_seeds} seeds; 'blew up': KL x"
          f"{BLOWUP['kl_growth']:g} over step 1, entropy rebound >= "
          f"{BLOWUP['entropy_rebound']:g} nats, or grad norm x{BLOWUP['grad_growth']:g}")
    header = (f"{'setting':<17} {'arm':<12} {'KL step 1':>9} {'max KL':>9} {'max/step1':>10} "
              f"{'H step 1':>8} {'H final':>7} {'H rebound':>9} {'max |g|':>8} "
              f"{'peak-final':>10} {'final reward':>13} blew up")
    print(header)
    print("-" * len(header))
    for setting, arms in rows.items():
        for arm, r in arms.items():
            blew = [b for b in r["blowups"] if b]
            what = f"{len(blew)}/{n_seeds}" + (f" ({'; '.join(blew[0])})" if blew else "")
            print(f"{setting:<17} {arm:<12} {r['initial_kl'][0]:>9.1e} {r['max_kl'][0]:>9.1e} "
                  f"{'x' + format(_growth(r), '.0f'):>10} {r['initial_entropy'][0]:>8.2f} "
                  f"{r['final_entropy'][0]:>7.2f} "
                  f"{r['entropy_rebound'][0]:>9.2f} {r['max_grad_norm'][0]:>8.2f} "
                  f"{r['reward_drop'][0]:>10.2f} {_cell(r['final_reward'], '.3f'):>13} {what}")


# --------------------------------------------------------------------------- figures


def _band(ax: Any, x: Any, vals: Any, color: Any, style: str, label: str, lw: float) -> None:
    import numpy as np

    mean = np.nanmean(vals, 0)
    n = np.sum(np.isfinite(vals), 0)
    se = np.nanstd(vals, 0, ddof=1) / np.sqrt(np.maximum(n, 1)) if vals.shape[0] > 1 \
        else np.zeros_like(mean)
    ax.plot(x, mean, style, color=color, label=label, lw=lw)
    ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.15)


def plot_grid(runs: dict[str, dict[str, list[list[dict[str, float]]]]], trivial: float,
              path: Path, title: str, columns: dict[str, str] | None = None, *,
              panels: Sequence[tuple[str, str, bool]] = PANELS,
              only: Sequence[str] | None = None) -> Path:
    """One row per metric of ``panels``, one column per mismatch level; per arm (all, or
    ``only`` these) the mean over seeds and a ± 1 s.e. band; the trivial policies' score as
    a line on the reward."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    ncol = len(runs)
    fig, axes = plt.subplots(len(panels), ncol, figsize=(7.5 * ncol, 2.7 * len(panels)),
                             sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab10")
    refs = ("no_mismatch", "none", "none_bypass")  # drawn last, on top
    colors = {"none": "black", "no_mismatch": "grey", "none_bypass": "red",
              "token_tis": "tab:blue", "icepop": "tab:green", "token_mask": "tab:orange",
              "token_mask_bypass": "tab:pink", "seq_mis": "tab:brown", "geo_mask": "tab:olive",
              "k3_mask": "tab:cyan", "token_veto": "tab:purple"}
    for c, (regime, arms) in enumerate(runs.items()):
        order = [a for a in arms if a not in refs] + [a for a in refs if a in arms]
        order = [a for a in order if only is None or a in only]
        for r, (key, label, log) in enumerate(panels):
            ax = axes[r, c]
            for arm in order:
                vals = np.array([[h.get(key, math.nan) for h in hist] for hist in arms[arm]],
                                float)
                if np.isnan(vals).all():
                    continue
                if log:
                    vals = np.clip(vals, 1e-6, None)  # zeros (all-equal rewards) on a log axis
                x = np.arange(1, vals.shape[1] + 1)
                _band(ax, x, vals, colors.get(arm, cmap(list(arms).index(arm) % 10)),
                      "--" if arm in refs else "-", arm, 2.0 if arm in refs else 1.2)
            if key == "reward/mean":
                ax.axhline(trivial, color="black", ls=":", lw=1.5,
                           label=f"trivial policies ({trivial:.3f})")
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{(columns or {}).get(regime, regime)}:\n{label}", fontsize=8)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0, c].legend(fontsize=7, ncol=3, loc="upper left")
        axes[-1, c].set_xlabel("training step")
    fig.suptitle(textwrap.fill(title, 110 * ncol), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_sweep(results: dict[str, dict[str, list[list[dict[str, float]]]]], trivial: float,
               path: Path, title: str) -> Path:
    """One column per sweep setting; rows: KL, entropy, grad norm, reward over steps; one
    curve per (arm, seed) so that a single seed's blow-up stays visible."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    keys = (("rollout_corr/k3_kl", "KL (k3)", True), ("bench/sampler_entropy", "entropy", False),
            ("grad/norm_max", "max |g|", True), ("reward/mean", "reward", False))
    ncol = len(results)
    fig, axes = plt.subplots(len(keys), ncol, figsize=(2.6 * ncol, 2.1 * len(keys)),
                             sharex="col", sharey="row", squeeze=False)
    colors = {"none": "black", "none_bypass": "red", "token_tis": "tab:blue"}
    for c, (setting, arms) in enumerate(results.items()):
        for r, (key, label, log) in enumerate(keys):
            ax = axes[r, c]
            for arm, seeds in arms.items():
                for i, hist in enumerate(seeds):
                    y = np.array([h.get(key, math.nan) for h in hist], float)
                    if log:
                        y = np.clip(y, 1e-6, None)
                    ax.plot(np.arange(1, len(y) + 1), y, color=colors.get(arm, "tab:green"),
                            lw=0.9, alpha=0.8, label=arm if i == 0 else None)
            if key == "reward/mean":
                ax.axhline(trivial, color="black", ls=":", lw=1.2)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(setting, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[-1, c].set_xlabel("step", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="best")
    fig.suptitle(textwrap.fill(title, 40 * ncol), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path
