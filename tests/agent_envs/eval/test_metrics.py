from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from agent_envs.eval.metrics import (
    Outcome,
    bootstrap_ci,
    compute_metrics,
    paired_diff,
    pass_at_k,
    pass_hat_k,
    wilson_interval,
)


def brute(n: int, c: int, k: int) -> tuple[float, float]:
    """pass@k and pass^k by enumerating every k-subset of n trials (c of them correct)."""
    trials = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    any_ok = sum(any(trials[i] for i in s) for s in subsets) / len(subsets)
    all_ok = sum(all(trials[i] for i in s) for s in subsets) / len(subsets)
    return any_ok, all_ok


def test_pass_at_k_and_pass_hat_k_match_brute_force_enumeration() -> None:
    rng = random.Random(0)
    cases = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]
    cases += [(n, rng.randint(0, n), rng.randint(1, n)) for n in [rng.randint(9, 12)
                                                                   for _ in range(20)]]
    for n, c, k in cases:
        any_ok, all_ok = brute(n, c, k)
        assert pass_at_k(n, c, k) == pytest.approx(any_ok, abs=1e-12), (n, c, k)
        assert pass_hat_k(n, c, k) == pytest.approx(all_ok, abs=1e-12), (n, c, k)


def test_bad_counts_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="n=3 c=4 k=1"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="k <= n"):
        pass_hat_k(2, 1, 3)


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.25 < wilson_interval(0, 10)[1] < 0.35
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    values = np.random.default_rng(1).random(200)
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert a == b
    assert a != bootstrap_ci(values, seed=4)
    assert a[0] < values.mean() < a[1]


def _outcomes(trials: int, p: float, tasks: int = 100, seed: int = 0) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    return [Outcome(task_id=f"t{i}", category=f"d{i % 2}", trials=trials,
                    correct=int(rng.binomial(trials, p))) for i in range(tasks)]


def test_intervals_shrink_as_trials_grow() -> None:
    widths = []
    for trials in (1, 2, 4, 8, 16):
        acc = compute_metrics(_outcomes(trials, 0.5), trials=trials)["overall"]["accuracy"]
        widths.append(acc["ci"][1] - acc["ci"][0])
        assert acc["ci_method"] == ("wilson" if trials == 1 else "bootstrap")
    assert widths == sorted(widths, reverse=True), widths
    assert widths[-1] < widths[0] / 2


def test_metrics_per_category_and_k() -> None:
    outs = [Outcome(task_id="a", category="x", trials=3, correct=3),
            Outcome(task_id="b", category="x", trials=3, correct=0),
            Outcome(task_id="c", category="y", trials=3, correct=1),
            Outcome(task_id="d", category="y", trials=2, correct=2)]  # one trial excluded
    m = compute_metrics(outs, trials=3, seed=0)
    assert m["overall"]["accuracy"]["value"] == pytest.approx((1 + 0 + 1 / 3 + 1) / 4)
    assert m["overall"]["pass@3"]["n_tasks"] == 3  # task d has only 2 scored trials
    assert m["overall"]["pass@2"]["value"] == pytest.approx(
        (1 + 0 + pass_at_k(3, 1, 2) + 1) / 4)
    assert m["overall"]["pass^2"]["value"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert m["categories"]["x"]["accuracy"]["value"] == 0.5
    assert set(m["categories"]) == {"x", "y"}
    assert compute_metrics(outs, trials=3, seed=0) == m


def test_paired_difference() -> None:
    a = {f"t{i}": 0.0 for i in range(50)}
    b = {f"t{i}": 1.0 if i < 25 else 0.0 for i in range(50)}
    r = paired_diff(a, {**b, "extra": 1.0}, seed=0)
    assert r["shared_tasks"] == 50 and r["diff"] == 0.5
    assert r["ci"][0] < 0.5 < r["ci"][1] and r["ci"][0] > 0.3
    assert not math.isnan(r["ci"][0])
