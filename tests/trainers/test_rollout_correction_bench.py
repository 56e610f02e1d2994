"""benchmarks/rollout_correction.py end to end on a tiny grid: the table, the JSON and the figure.

The full experiment takes ~9 minutes (README); this runs 2 arms x 2 seeds x 2 steps (~5 s) of
the same code: the real Trainer with a sink-ignoring sampler on toy-pattern.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("final_reward", "mean_reward", "initial_kl", "max_kl", "max_grad_norm",
           "rejected_token_frac", "final_entropy")


@pytest.mark.slow
def test_the_benchmark_prints_a_table_per_arm_and_saves_the_curves(tmp_path: Path) -> None:
    out = tmp_path / "rc.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rollout_correction.py"), "--steps", "2",
         "--seeds", "0", "1", "--arms", "none", "token_tis", "--head-gains", "8", "--jobs", "1",
         "--out", str(out), "--work", str(tmp_path / "work")],
        check=False, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout
    assert "head gain 8" in table and "mean ± std over seeds" in table
    rows = {line.split()[0]: line for line in table.splitlines()
            if line.split() and line.split()[0] in ("none", "token_tis")}
    assert set(rows) == {"none", "token_tis"}
    assert all(row.count("±") >= 5 for row in rows.values())  # mean ± spread per column

    assert out.stat().st_size > 10_000  # a PNG with curves, not an empty canvas
    res = json.loads(out.with_suffix(".json").read_text())
    summary = res["summary"]["head gain 8"]
    for arm in ("none", "token_tis"):
        for m in METRICS:
            assert set(summary[arm][m]) == {"mean", "std"}, (arm, m)
        # the mismatch is real: a sink-ignoring sampler at head gain 8 is far from the trainer
        assert summary[arm]["initial_kl"]["mean"] > 1e-2
        runs = res["history"]["head gain 8"][arm]
        assert len(runs) == 2  # one curve per seed
        for run in runs:
            for key in ("reward/mean", "rollout_corr/kl", "grad/norm_max",
                        "rollout_corr/rejected_token_frac", "bench/sampler_entropy"):
                assert len(run[key]) == 2, key  # one point per step
    assert summary["none"]["rejected_token_frac"]["mean"] == 0.0  # no correction rejects nothing
