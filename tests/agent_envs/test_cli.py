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


# -- issue 18: each mistake a newcomer makes gets one clear line and exit code 2 ---------------


def _err(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    return captured.err


def test_misspelt_sandbox_fails_at_parse_time_with_did_you_mean_on_both_paths(tmp_path, capsys):
    # Before: accepted; every episode became an infra error ("infra errors 2"), and the
    # did-you-mean showed only with --out.
    for extra in ([], ["--out", str(tmp_path / "eps.jsonl")]):
        assert main(["rollout", "python-tool", "--sandbox", "bubblewarp", "--episodes", "2",
                     "--quiet", *extra]) == 2
        assert ("error: sandbox='bubblewarp': unknown sandbox backend 'bubblewarp'; did you "
                "mean 'bubblewrap'?") in _err(capsys)
    assert not (tmp_path / "eps.jsonl").exists()
    assert main(["rollout", "python-tool", "--env-arg", "memory_mb=1", "--episodes", "1",
                 "--quiet"]) == 2
    assert "memory_mb=1 is too small: a python session needs at least 256 MiB" in _err(capsys)


def test_env_argument_mistakes_name_the_argument(capsys):
    assert main(["rollout", "toy-digit", "--env-arg", "max_turnz=3", "--episodes", "1",
                 "--quiet"]) == 2
    assert "toy-digit-v0 got an unknown argument 'max_turnz'; did you mean 'max_turns'?" \
        in _err(capsys)
    # Before: "invalid literal for int() with base 10: 'abc'" (which argument?)
    assert main(["rollout", "toy-digit", "--env-arg", "max_turns=abc", "--episodes", "1",
                 "--quiet"]) == 2
    assert "error: max_turns must be an int, got 'abc' (str)" in _err(capsys)
    # Before: "PrefilledDigitsEnv.__init__() got multiple values for argument 'task_source'"
    assert main(["rollout", "toy-digit", "--tasks", "gsm8k", "--episodes", "1", "--quiet"]) == 2
    assert ("error: toy-digit-v0 takes no task_source argument: it makes its own tasks. Drop "
            "task_source= (on the command line: --tasks)") in _err(capsys)
    assert main(["rollout", "toy-digit", "--env-arg", "conversation_date=yesterday",
                 "--episodes", "1", "--quiet"]) == 2
    assert "conversation_date must be an ISO date YYYY-MM-DD" in _err(capsys)


def test_policies_that_cannot_load_are_one_line(capsys):
    # Before: a PolicyUnavailableError traceback, and a huggingface OSError traceback.
    assert main(["rollout", "toy-digit", "--policy", "vllm:foo", "--episodes", "1",
                 "--quiet"]) == 2
    assert "error: VLLMPolicy needs vLLM (and a CUDA GPU): pip install 'agent-envs[gpu]'" \
        in _err(capsys)
    assert main(["rollout", "toy-digit", "--policy", "hf:/nonexistent", "--episodes", "1",
                 "--quiet"]) == 2
    assert "error: model '/nonexistent' is not a directory here" in _err(capsys)


def test_ray_backend_without_ray_is_one_line(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["rollout", "toy-digit", "--backend", "ray", "--episodes", "1",
                 "--quiet"]) == 2
    assert "error: --backend ray needs Ray, which is not installed: pip install " \
           "'agent-envs[ray]' (or use --backend local)" in _err(capsys)


def test_train_print_config_and_help_config_are_declared(capsys):
    import pytest

    pytest.importorskip("torch")
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "tiny-cpu.toml"
    # Before: "unrecognized arguments: --print-config", though config errors advise it.
    assert main(["train", str(config), "steps=3", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 3 and printed["env"]["id"] == "toy-digit"
    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "[model]" in out and "steps = 10" in out
    # A bad env kwarg in a train config: a did-you-mean.
    assert main(["train", str(config), "env.kwargs.max_turnz=2", "--print-config"]) == 2
    assert ("error: env.kwargs: toy-digit-v0 got an unknown argument 'max_turnz'; did you mean "
            "'max_turns'?") in _err(capsys)


def _all_infra_args(extra: list[str]) -> list[str]:
    # A preimport that does not exist: the zygote cannot start, so every episode is an infra
    # error (a real sandbox fault, not a mocked one).
    return ["rollout", "python-tool", "--sandbox", "local", "--episodes", "2", "--quiet",
            "--transcripts", "0", "--env-arg", 'preimports=["no_such_module_for_agent_envs"]',
            *extra]


def test_all_infra_rollout_exits_1_with_and_without_out(tmp_path, capsys):
    # Before: exit 1 without --out, 0 with it; and the --out summary had "mean_reward": NaN.
    assert main(_all_infra_args([])) == 1
    assert "error: all 2 episode(s) were flagged as infra errors" in _err(capsys)
    assert main(_all_infra_args(["--out", str(tmp_path / "eps.jsonl")])) == 1
    captured = capsys.readouterr()
    assert "error: all 2 episode(s) were flagged as infra errors" in captured.err
    summary = json.loads(captured.out, parse_constant=lambda c: pytest_fail(c))
    assert summary["mean_reward"] is None and summary["solved_frac"] is None
    assert summary["infra_flagged"] == 2


def pytest_fail(constant: str) -> None:
    raise AssertionError(f"the summary JSON holds {constant}, which is not JSON")


def test_out_does_not_change_which_tasks_are_drawn(tmp_path, capsys):
    # Before: train/0, train/1, ... without --out and train/1190623118, ... with it.
    args = ["rollout", "python-tool", "--episodes", "4", "--group-size", "2", "--seed", "5",
            "--quiet", "--no-color", "--difficulty", "1"]
    assert main([*args, "--transcripts", "4"]) == 0
    printed = [line.split(" | task ")[1].split(" | ")[0]
               for line in capsys.readouterr().out.splitlines() if line.startswith("=== episode")]
    out_file = tmp_path / "eps.jsonl"
    assert main([*args, "--out", str(out_file)]) == 0
    capsys.readouterr()
    written = [json.loads(line)["task_id"] for line in out_file.read_text().splitlines()]
    assert len(printed) == 4 and printed == written
    assert printed[0] == printed[1] and printed[2] == printed[3]  # one task per group


def test_eval_limit_runs_a_recorded_sample_into_its_own_default_directory(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "python-tool", "--limit", "6", "--seed", "3", "--quiet"]) == 0
    bundle = tmp_path / "runs" / "eval" / "python-tool" / "oracle-s3-n6"
    header = json.loads((bundle / "header.json").read_text())
    assert header["sample"]["limit"] == 6 and header["episodes"] == 6 * header["trials"]
    assert main(["eval", "verify", str(bundle)]) == 0
    assert main(["eval", "python-tool", "--limit", "0", "--quiet"]) == 2
    assert "limit must be >= 1" in capsys.readouterr().err


def test_unreachable_env_url_exits_1_with_and_without_out(tmp_path, capsys):
    # Before: the oracle path (no --out) raised the reset's ServerUnavailableError and exited
    # 2 ("bad input, nothing ran") while the collector (--out) flagged every episode: exit 1.
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    args = ["rollout", "toy-digit", "--env-url", url, "--episodes", "2", "--quiet",
            "--transcripts", "0"]
    assert main(args) == 1
    err = _err(capsys)
    assert "error: all 2 episode(s) were flagged as infra errors" in err
    assert "no agent-envs server answers at" in err
    assert main([*args, "--out", str(tmp_path / "eps.jsonl")]) == 1
    assert "error: all 2 episode(s) were flagged as infra errors" in _err(capsys)
