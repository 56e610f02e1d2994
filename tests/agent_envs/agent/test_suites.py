"""The multi-tool eval suites: pinned, and the oracle solves them through the eval runner."""

from __future__ import annotations

import json

import pytest

from agent_envs.eval import EvalConfig, build_manifest, get_suite, official_manifest, run_eval
from agent_envs.eval.suites import VERIFIER_VERSIONS
from agent_envs.rollout import OraclePolicy

SUITES = ["agent-research", "agent-dataops"]


@pytest.mark.parametrize("suite", SUITES)
def test_the_pinned_manifest_is_what_the_code_builds(suite):
    built, pinned = build_manifest(get_suite(suite)), official_manifest(suite)
    assert pinned is not None and built.hash == pinned.hash, pinned.diff(built)
    assert len(built.tasks) == 100
    assert {t.category for t in built.tasks} == {f"d{d}" for d in range(1, 6)}


def test_every_family_verifier_version_is_the_one_suites_pin():
    from agent_envs.envs import agent, browser, functions, python_tool, toy

    for env_id, family in (("agent-v0", agent), ("python-tool-v0", python_tool),
                           ("browser-v0", browser.verifier), ("toy-digit-v0", toy),
                           ("functions-v0", functions)):
        assert VERIFIER_VERSIONS[env_id] == family.VERIFIER_VERSION, env_id


@pytest.mark.parametrize("suite", SUITES)
def test_the_oracle_solves_a_sample_of_every_difficulty_and_its_wrong_twin_none(suite,
                                                                                tmp_path):
    """One task per difficulty (the whole suite: benchmarks/suite_sweep.py)."""
    scores = {}
    for name, policy in (("oracle", OraclePolicy()), ("wrong", OraclePolicy(wrong=True))):
        bundle = run_eval(suite, policy, tmp_path / name,
                          EvalConfig(trials=1, limit=5, progress=False, concurrency=4))
        m = json.loads((bundle / "metrics.json").read_text())
        assert m["excluded_infra"]["count"] == 0 and m["overall"]["tasks"] == 5
        scores[name] = m["overall"]["accuracy"]["value"]
    assert scores == {"oracle": 1.0, "wrong": 0.0}
