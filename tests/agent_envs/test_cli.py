from __future__ import annotations

import json
import subprocess
import sys

from agent_envs.cli import main


def test_rollout_oracle_prints_transcript_and_summary(capsys):
    rc = main(["rollout", "python-tool", "--episodes", "4", "--transcripts", "1", "--quiet",
               "--difficulty", "1", "--no-color"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "=== episode 0 | task procedural/v0/" in out
    assert "assistant [analysis] -> python:" in out and "assistant [final]:" in out
    assert "solved         4/4 (100.0%)" in out and "infra errors   0" in out
    assert "tool calls     4 (1.00/episode)" in out


def test_rollout_wrong_oracle_scores_zero(capsys):
    assert main(["rollout", "python-tool", "--episodes", "3", "--transcripts", "0", "--quiet",
                 "--policy", "oracle-wrong"]) == 0
    out = capsys.readouterr().out
    assert "solved         0/3 (0.0%)" in out and "mean reward    0.000" in out


def test_rollout_out_file_goes_through_the_collector(tmp_path, capsys):
    out_file = tmp_path / "eps.jsonl"
    assert main(["rollout", "python-tool", "--episodes", "3", "--quiet", "--out",
                 str(out_file)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3 and summary["solved_frac"] == 1.0
    assert len(out_file.read_text().strip().splitlines()) == 3


def test_bad_input_gets_a_clear_error(capsys):
    assert main(["rollout", "python-tol", "--episodes", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no environment 'python-tol'" in err and "Did you mean 'python-tool'" in err
    assert main(["rollout", "python-tool", "--episodes", "0"]) == 2
    assert "--episodes must be >= 1, got 0" in capsys.readouterr().err


def test_list_shows_envs_and_backends(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "python-tool-v0" in out and "agent_envs/python-tool-v0" in out
    assert "local        available" in out


def test_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "agent_envs.cli", "rollout", "python-tool",
                           "--episodes", "2", "--transcripts", "0", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "solved         2/2" in proc.stdout


def test_train_subcommand_runs_the_trainer(tmp_path, capsys):
    import pytest

    pytest.importorskip("torch")
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "tiny-cpu.toml"
    rc = main(["train", str(config), "steps=1", f"logging.out_dir={tmp_path}",
               "rollout.tasks_per_step=2", "rollout.group_size=2"])
    assert rc == 0
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / "metrics.png").is_file()
    lines = (tmp_path / "metrics.jsonl").read_text().strip().splitlines()
    record = json.loads(lines[-1])
    assert record["step"] == 1 and 0.0 <= record["reward/mean"] <= 1.0


def test_train_bad_config_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = 0\n")
    assert main(["train", str(bad)]) == 2
    assert "steps" in capsys.readouterr().err


def test_list_protections_reports_what_each_backend_isolates(capsys):
    assert main(["list", "--protections"]) == 0
    out = capsys.readouterr().out
    assert "local: active:" in out and "network_namespace" in out.split("local: active:")[1]
    assert "IPC namespace per session" in out
    assert "no PID namespace per session" not in out  # a stale claim the docker report made
