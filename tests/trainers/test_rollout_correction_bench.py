"""benchmarks/rollout_correction.py: the same code as the full experiment, on tiny grids.

The full grid and the explosion sweep take tens of minutes (docs/rollout-correction.md);
here: the arguments are refused before any compute, the LM-head shortcut changes no number,
a 2 arms x 2 seeds x 5 steps grid prints its table and saves the figure and JSON (and a rerun
reuses the saved runs), and a 2-setting sweep reports what blew up.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "rollout_correction.py"
METRICS = ("final_reward", "mean_reward", "learned", "initial_kl", "max_kl", "max_grad_norm",
           "rejected_token_frac", "final_entropy", "entropy_rebound")
TINY = ["--steps", "5", "--length", "6", "--tasks", "2", "--group-size", "2", "--jobs", "1"]


@pytest.fixture(scope="module")
def rc() -> ModuleType:
    """The benchmark script as a module."""
    spec = importlib.util.spec_from_file_location("rollout_correction_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread() -> Iterator[None]:
    """main() sets torch's thread count for its runs; give the suite its own back."""
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize(("argv", "message"), [
    (["--arms", "none", "tokn_tis"], "--arms: unknown arm 'tokn_tis'. Did you mean 'token_tis'?"),
    (["--out", "{tmp}/figure.svg"], "--out {tmp}/figure.svg: give a directory"),
    (["--out", "{tmp}/a_file"], "--out {tmp}/a_file: is a file, not a directory"),
    (["--work", "{tmp}/a_file"], "--work {tmp}/a_file: is a file, not a directory"),
    (["--steps", "3"], "--steps 3: the final reward is the mean of the last 5 steps"),
    (["--seeds", "0", "0"], "--seeds 0 0: seeds must be distinct"),
    (["--levels", "gros"], "--levels: unknown level 'gros'. Did you mean 'gross'?"),
    (["--pattern", "0012"], "pattern='0012' is invalid"),
    (["--minibatches", "100"], "algo.minibatches"),
    (["--sweep", "--sweep-settings", "lr 1e2"], "unknown setting 'lr 1e2'. Did you mean 'lr 1e-2'?"),
    (["--sweep", "--sweep-arms", "nonee"], "--sweep-arms: unknown arm 'nonee'. Did you mean 'none'?"),
    (["--replot", "--out", "{tmp}/empty"], "--replot: no results at {tmp}/empty/rollout_correction"),
])
def test_bad_arguments_are_refused_before_any_compute(
        rc: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    (tmp_path / "a_file").write_text("x")
    work = tmp_path / "work"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--work" not in argv:
        argv += ["--work", str(work)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        rc.main(argv)
    assert exc.value.code == 2
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not (work / "runs").exists()  # nothing was computed


def test_the_allowed_rows_head_changes_no_logprob_and_no_update(rc: ModuleType,
                                                                 tmp_path: Path) -> None:
    from trainers.train import Trainer, build_model

    spec = rc.RunSpec(arm="token_tis", seed=0, head_gain=8.0, steps=1, tasks=2, group_size=4,
                      length=6, pattern="01234", lr=1e-2, epochs=1, minibatches=2,
                      max_grad_norm=1.0, sink_scale=3.0, attn_gain=1.0, bf16_sampler=False)
    config = rc.make_config(spec, tmp_path)
    allowed = rc._allowed_ids(config)
    rc.register_sinkless_attention()
    runs = []
    for shortcut in (False, True):
        model = build_model(config)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(spec.head_gain)
        if shortcut:
            model.lm_head = rc.AllowedRowsHead(model.lm_head, allowed)
        ids = torch.as_tensor(allowed)
        init = model.get_output_embeddings().weight[ids].detach().clone()
        trainer = Trainer(config, model=model)
        trainer.policy = rc.SubsetSampler(model, allowed, sinkless=True, seed=0)
        metrics = [trainer.step() for _ in range(spec.steps)]
        rows = model.get_output_embeddings().weight[ids].detach().clone()
        assert not torch.equal(rows, init)  # the head trained
        runs.append((metrics, rows))
    (full, full_rows), (cut, cut_rows) = runs
    for key in ("reward/mean", "rollout_corr/k3_kl", "grad/norm_max", "loss/policy"):
        # Not bit-equal after an update: the grad norm sums over other tensors (float order).
        assert [m[key] for m in cut] == pytest.approx([m[key] for m in full], rel=1e-4), key
    assert torch.allclose(cut_rows, full_rows, rtol=1e-4, atol=1e-6)
    head = rc.AllowedRowsHead(torch.nn.Linear(4, 300, bias=False), [5, 7])
    with pytest.raises(IndexError, match="only the allowed tokens"):
        head.weight[torch.tensor([6])]


@pytest.mark.slow
def test_the_grid_prints_a_table_per_arm_saves_the_curves_and_reuses_saved_runs(
        rc: ModuleType, tmp_path: Path, one_thread: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [*TINY, "--seeds", "0", "1", "--arms", "none", "token_tis", "--levels", "gross",
            "--out", str(out), "--work", str(work)]
    # In-process (a subprocess would pay torch's and transformers' imports again).
    assert rc.main(argv) == 0
    table = capsys.readouterr().out
    assert "4 runs: 0 saved" in table
    assert "gross mismatch (head gain 2, sink scale 30" in table and "mean ± s.e. over 2 seeds" in table
    assert re.search(r"trivial policies .*best constant 0\.\d+", table)
    rows = {line.split()[0]: line for line in table.splitlines()
            if line.split() and line.split()[0] in ("none", "token_tis")}
    assert set(rows) == {"none", "token_tis"}
    assert all(row.count("±") >= 6 and re.search(r" [0-2]/2 ", row) for row in rows.values())
    assert re.search(r"[+-]\d\.\d{3}±\d\.\d{3}", rows["token_tis"])  # its difference from none

    png = out / "rollout_correction.png"
    assert png.stat().st_size > 10_000  # a figure with curves, not an empty canvas
    assert (out / "rollout_correction_headline.png").stat().st_size > 10_000
    res = json.loads(png.with_suffix(".json").read_text())
    assert res["mode"] == "grid" and 0 < res["trivial"]["trivial"] < 0.5
    summary = res["summary"]["gross"]
    for arm in ("none", "token_tis"):
        for m in METRICS:
            assert len(summary[arm][m]) == 2, (arm, m)  # (mean, standard error)
        assert len(summary[arm]["per_seed"]["final_reward"]) == 2
        # the mismatch is real: a sink-ignoring sampler at the gross level is far from the trainer
        assert summary[arm]["initial_kl"][0] > 1e-2
        runs = res["history"]["gross"][arm]
        assert len(runs) == 2  # one curve per seed
        for run in runs:
            for key in ("reward/mean", "rollout_corr/kl", "grad/norm_max",
                        "rollout_corr/rejected_token_frac", "bench/sampler_entropy"):
                assert len(run[key]) == 5, key  # one point per step
    assert summary["none"]["rejected_token_frac"][0] == 0.0  # no correction rejects nothing
    assert len(list((work / "runs").glob("*.json"))) == 4

    # The same command again computes nothing and reports the same numbers.
    assert rc.main(argv) == 0
    again = capsys.readouterr().out
    assert "4 runs: 4 saved" in again and "0 to compute" in again
    assert json.loads(png.with_suffix(".json").read_text())["summary"] == res["summary"]
    # The figure redraws from the JSON alone, and the tables print in Markdown for the docs.
    assert rc.main([*argv, "--replot", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| arm | final reward | mean reward | learned |" in md
    row = r"^\| `token_tis` \| \d\.\d{3} ± \d\.\d{3} \|.*\| [+-]\d\.\d{3} ± "
    assert re.search(row, md, re.MULTILINE)


@pytest.mark.slow
def test_the_sweep_reports_per_setting_what_blew_up(
        rc: ModuleType, tmp_path: Path, one_thread: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert rc.main([*TINY, "--sweep", "--sweep-settings", "base", "lr 3e-2", "--sweep-seeds",
                    "0", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    table = capsys.readouterr().out
    assert "explosion sweep" in table and "blew up" in table
    lines = [line for line in table.splitlines() if line.startswith(("base ", "lr 3e-2 "))]
    assert len(lines) == 6  # 2 settings x (none, none_bypass, token_tis)
    assert all(re.search(r" [01]/1", line) for line in lines)
    res = json.loads((out / "rollout_correction_sweep.json").read_text())
    assert res["mode"] == "sweep" and list(res["summary"]) == ["base", "lr 3e-2"]
    for setting in res["summary"].values():
        assert set(setting) == {"none", "none_bypass", "token_tis"}
        for row in setting.values():
            assert len(row["blowups"]) == 1 and isinstance(row["blowups"][0], list)
    assert (out / "rollout_correction_sweep.png").stat().st_size > 10_000
