"""`agent-envs rollout agent --tools ...` and the oracle through the command line."""

from __future__ import annotations

import pytest

from agent_envs.cli import main


@pytest.mark.parametrize(("tools", "tasks"), [("python,browser", None),
                                               ("python,functions", "dataops")])
def test_rollout_agent_with_tools_solves_every_episode(tools, tasks, capsys):
    args = ["rollout", "agent", "--tools", tools, "--episodes", "2", "--transcripts", "0",
            "--quiet", "--sandbox", "local", "--difficulty", "2"]
    assert main(args + (["--tasks", tasks] if tasks else [])) == 0
    out = capsys.readouterr().out
    assert "solved         2/2 (100.0%)" in out and "infra errors   0" in out


def test_rollout_agent_denied_python_solves_none(capsys):
    assert main(["rollout", "agent", "--tools", "browser", "--episodes", "2",
                 "--transcripts", "0", "--quiet"]) == 0
    assert "solved         0/2 (0.0%)" in capsys.readouterr().out


def test_rollout_toy_digit_oracle_solves_every_episode(capsys):
    # Before issue 19 the shared oracle fell through to python-tool logic here: 0/3.
    assert main(["rollout", "toy-digit", "--episodes", "3", "--transcripts", "0",
                 "--quiet"]) == 0
    assert "solved         3/3 (100.0%)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["rollout", "python-tool", "--tools", "python"],
     "error: --tools is for the agent env (agent-envs rollout agent --tools python,browser); "
     "python-tool has its tools built in"),
    (["rollout", "agent", "--tools", "python,browzer"],
     "error: tools has an unknown tool 'browzer'; did you mean 'browser'?"),
    (["rollout", "agent", "--tools", ","], "error: --tools ',' names no tool"),
])
def test_bad_tools_are_one_clear_line(args, message, capsys):
    assert main(args + ["--episodes", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(message)
