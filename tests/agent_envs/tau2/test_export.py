"""tau2 suites through the real eval runner, and the export to τ²'s results JSON, which τ²'s
own evaluator and leaderboard checks read back to the same rewards."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from agent_envs.cli import main
from agent_envs.envs.tau2 import Tau2Error
from agent_envs.envs.tau2.export import export_bundle
from agent_envs.envs.tau2.judge import JUDGE_OFF
from agent_envs.eval import EvalConfig, load_bundle, run_eval, verify
from agent_envs.rollout import OraclePolicy
from tests.agent_envs.tau2.tau2_reference import EvaluationType, Results, evaluate_simulation

QUIET = {"progress": False, "concurrency": 4}


@pytest.fixture(scope="module")
def mock_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_eval("tau2-mock", OraclePolicy(), tmp_path_factory.mktemp("m") / "oracle",
                    EvalConfig(trials=2, seed=3, **QUIET))


def test_the_oracle_scores_one_on_tau2_mock_and_the_bundle_verifies(mock_bundle: Path) -> None:
    m = json.loads((mock_bundle / "metrics.json").read_text())
    assert m["overall"]["accuracy"]["value"] == 1.0 and m["overall"]["tasks"] == 9
    assert m["overall"]["pass^2"]["value"] == 1.0 and m["excluded_infra"]["count"] == 0
    assert verify(mock_bundle) == []
    header = json.loads((mock_bundle / "header.json").read_text())
    assert header["suite"]["status"] == "official"
    assert header["user_simulator"] == {"kind": "scripted", "script": "oracle-plan-1"}
    assert header["judge"] == JUDGE_OFF


def test_the_wrong_oracle_scores_zero(tmp_path: Path) -> None:
    b = run_eval("tau2-mock", OraclePolicy(wrong=True), tmp_path / "wrong",
                 EvalConfig(trials=1, **QUIET))
    assert json.loads((b / "metrics.json").read_text())["overall"]["accuracy"]["value"] == 0.0


def test_the_export_is_taus_results_and_taus_evaluator_gives_the_same_rewards(
        mock_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "tau2_results.json"
    summary = export_bundle(mock_bundle, out)
    assert summary == {"out": str(out), "domain": "mock", "simulations": 18, "tasks": 9,
                       "mean_reward": 1.0}
    results = Results.load(out)
    assert results.info.num_trials == 2 and results.info.environment_info.domain_name == "mock"
    assert results.info.user_info.implementation == "agent-envs scripted user"
    assert results.info.agent_info.llm == "oracle"
    episodes = {e.episode_id: e for e in load_bundle(mock_bundle).episodes}
    tasks = {t.id: t for t in results.tasks}
    for sim in results.simulations:
        theirs = evaluate_simulation(simulation=sim, task=tasks[sim.task_id],
                                     evaluation_type=EvaluationType.ALL, solo_mode=False,
                                     domain="mock")
        assert theirs.reward == sim.reward_info.reward == episodes[sim.id].reward
        ours = sim.reward_info.model_dump(mode="json")
        ours["info"].pop("agent_envs")
        assert ours == theirs.model_dump(mode="json")
        assert sim.trial == episodes[sim.id].index and sim.seed == episodes[sim.id].seed
        assert [m.turn_idx for m in sim.messages] == list(range(len(sim.messages)))


def test_taus_leaderboard_checks_accept_the_export(mock_bundle: Path, tmp_path: Path) -> None:
    from tau2.registry import registry
    from tau2.scripts.leaderboard.verify_trajectories_public import (
        check_format,
        check_num_trials,
        check_tasks,
    )

    out = tmp_path / "r.json"
    export_bundle(mock_bundle, out)
    results, ok, error = check_format(str(out))
    assert ok, error
    assert check_num_trials(results) == (True, "")
    # τ²'s own limitation: a loaded task's message history carries the time of loading (τ²'s
    # message timestamps default to now), so mock's two tasks with a history never hash alike,
    # whoever wrote the file. Every task is τ²'s, timestamps aside.
    assert check_tasks(results) == (False, "Task mismatches found in 2 tasks")
    theirs = {t.id: t for t in registry.get_tasks_loader("mock")("base")}

    def untimed(node):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            return {k: untimed(v) for k, v in node.items() if k != "timestamp"}
        return [untimed(v) for v in node] if isinstance(node, list) else node

    assert len(results.tasks) == len(theirs) == 9
    for task in results.tasks:
        assert untimed(task.model_dump()) == untimed(theirs[task.id].model_dump())


def test_export_from_the_command_line_and_its_mistakes(mock_bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli.json"
    assert main(["eval", "export", str(mock_bundle), "--format", "tau2", "--out", str(out)]) == 0
    assert "18 simulations of 9 mock tasks, mean reward 1.000" in capsys.readouterr().out
    assert Results.load(out).simulations
    assert main(["eval", "export", str(mock_bundle)]) == 2
    assert "usage: agent-envs eval export BUNDLE_DIR --format tau2" in capsys.readouterr().err
    assert main(["eval", "tau2-mock", "--user-model", "m"]) == 2
    assert "--user-model names the model behind --user URL" in capsys.readouterr().err


def test_a_bundle_of_another_env_is_refused(mock_bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(mock_bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "env_id": "functions-v0"}))
    with pytest.raises(Tau2Error, match=re.escape("is a bundle of functions-v0, not of the "
                                                  "tau2 env")):
        export_bundle(other, tmp_path / "x.json")


def test_eval_arguments_outside_the_suite_are_refused(tmp_path: Path) -> None:
    from agent_envs.eval.runner import EvalRunError

    with pytest.raises(EvalRunError, match=re.escape("env argument(s) max_steps would change "
                                                     "suite 'tau2-mock': an eval run of "
                                                     "tau2-v0 may set only user, record_user, "
                                                     "judge")):
        run_eval("tau2-mock", OraclePolicy(), tmp_path / "x",
                 EvalConfig(trials=1, env_args={"max_steps": 3}, **QUIET))
