"""Eval metrics with their uncertainty: accuracy, unbiased pass@k and pass^k, 95% CIs.

Every number is a mean over tasks of a per-task value, so its uncertainty comes from which
tasks the suite happened to hold: the CI is a seeded task-level bootstrap (resample tasks
with replacement, ``BOOTSTRAP_RESAMPLES`` times, percentile interval). With one trial per
task each task is a Bernoulli outcome and the Wilson score interval is used instead.

* accuracy: the mean over tasks of ``c / n`` (``c`` of ``n`` trials correct);
* pass@k: the chance that at least one of ``k`` trials drawn without replacement from the
  ``n`` is correct, ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021, unbiased);
* pass^k: the chance that all ``k`` drawn trials are correct, ``C(c, k) / C(n, k)``
  (tau-bench's consistency measure).
Tasks with fewer than ``k`` scored trials (infra exclusions) are left out of that k.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP_RESAMPLES", "Outcome", "bootstrap_ci", "compute_metrics", "paired_diff",
           "pass_at_k", "pass_hat_k", "wilson_interval"]

BOOTSTRAP_RESAMPLES = 2000
Z95 = 1.959963984540054


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One task's scored trials: ``correct`` of ``trials`` (infra-excluded ones not counted)."""

    task_id: str
    category: str
    trials: int
    correct: int


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct of ``n`` trials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that ``k`` trials drawn from the ``n`` are all correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass^k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return math.comb(c, k) / math.comb(n, k)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (min(lo, p), max(hi, p))  # never a rounding error on the wrong side of the point


def bootstrap_ci(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
                 ) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` over seeded task resamples."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def _metric(values: list[float], seed: int, *, bernoulli: bool) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return {"value": None, "ci": [None, None], "n_tasks": 0, "ci_method": None}
    if bernoulli:
        lo, hi = wilson_interval(round(arr.sum()), len(arr))
        method = "wilson"
    else:
        lo, hi = bootstrap_ci(arr, seed)
        method = "bootstrap"
    return {"value": float(arr.mean()), "ci": [lo, hi], "n_tasks": len(arr),
            "ci_method": method}


def _block(outcomes: list[Outcome], max_k: int, seed: int) -> dict[str, Any]:
    scored = [o for o in outcomes if o.trials > 0]
    one_trial = all(o.trials == 1 for o in scored)
    out = {"accuracy": _metric([o.correct / o.trials for o in scored], seed,
                               bernoulli=one_trial)}
    for k in range(1, max_k + 1):
        eligible = [o for o in scored if o.trials >= k]
        bern = k == 1 and one_trial
        out[f"pass@{k}"] = _metric([pass_at_k(o.trials, o.correct, k) for o in eligible],
                                   seed, bernoulli=bern)
        out[f"pass^{k}"] = _metric([pass_hat_k(o.trials, o.correct, k) for o in eligible],
                                   seed, bernoulli=bern)
    out["tasks"] = len(scored)
    out["episodes"] = sum(o.trials for o in scored)
    return out


def compute_metrics(outcomes: Iterable[Outcome], *, trials: int, seed: int = 0
                    ) -> dict[str, Any]:
    """Metrics for the whole suite and per category, each with a 95% CI.

    Args:
        outcomes: One per task.
        trials: Trials per task the run asked for (k goes up to it).
        seed: Bootstrap seed (the same seed gives the same intervals).
    """
    outcomes = list(outcomes)
    cats: dict[str, list[Outcome]] = {}
    for o in outcomes:
        cats.setdefault(o.category, []).append(o)
    return {"overall": _block(outcomes, trials, seed),
            "categories": {c: _block(v, trials, seed) for c, v in sorted(cats.items())},
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": seed, "level": 0.95}}


def paired_diff(a: Mapping[str, float], b: Mapping[str, float], seed: int = 0
                ) -> dict[str, Any]:
    """Mean of ``b - a`` over the tasks both hold, with a seeded paired bootstrap CI."""
    shared = sorted(set(a) & set(b))
    diffs = np.asarray([b[t] - a[t] for t in shared], dtype=np.float64)
    lo, hi = bootstrap_ci(diffs, seed) if len(shared) else (float("nan"), float("nan"))
    return {"diff": float(diffs.mean()) if len(shared) else None, "ci": [lo, hi],
            "shared_tasks": len(shared)}
