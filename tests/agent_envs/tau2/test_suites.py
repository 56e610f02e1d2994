"""The pinned tau2 suites: what the code builds is what is pinned, and on a seeded sample the
oracle scores 1 and its wrong twin 0 through the real eval runner (tau2-mock whole:
test_export.py; every task: ``python benchmarks/tau2_agreement.py``, which also plays the wrong
oracle, and ``agent-envs eval tau2-retail --policy oracle``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_envs.envs.tau2 import VERIFIER_VERSION
from agent_envs.eval import EvalConfig, build_manifest, get_suite, official_manifest, run_eval
from agent_envs.eval.suites import VERIFIER_VERSIONS
from agent_envs.rollout import OraclePolicy
from tests.agent_envs.tau2.tau2_reference import Results  # noqa: F401  (skip without τ², stub litellm)

SIZES = {"tau2-retail": (114, {"train": 74, "test": 40}),
         "tau2-airline": (50, {"train": 30, "test": 20}),
         "tau2-mock": (9, {"base": 9})}


@pytest.mark.parametrize("suite", sorted(SIZES))
def test_the_pinned_manifest_is_what_the_code_builds(suite: str) -> None:
    built = build_manifest(get_suite(suite))
    pinned = official_manifest(suite)
    assert pinned is not None and built.hash == pinned.hash, pinned.diff(built)
    n, by_split = SIZES[suite]
    assert len(built.tasks) == n and built.env_id == "tau2-v0" and built.trials == 4
    counts: dict[str, int] = {}
    for t in built.tasks:
        counts[t.category] = counts.get(t.category, 0) + 1
    assert counts == by_split
    assert built.verifier_version == VERIFIER_VERSIONS["tau2-v0"] == VERIFIER_VERSION


@pytest.mark.parametrize(("suite", "limit"), [("tau2-retail", 4), ("tau2-airline", 2)])
@pytest.mark.parametrize("wrong", [False, True], ids=["oracle", "oracle-wrong"])
def test_on_a_sample_the_oracle_scores_one_and_the_wrong_oracle_zero(suite: str, limit: int,
                                                                     wrong: bool,
                                                                     tmp_path: Path) -> None:
    b = run_eval(suite, OraclePolicy(wrong=wrong), tmp_path / "b", EvalConfig(
        trials=1, limit=limit, concurrency=4, progress=False))
    m = json.loads((b / "metrics.json").read_text())
    assert m["overall"]["tasks"] == limit and m["excluded_infra"]["count"] == 0
    assert set(m["categories"]) == {"train", "test"}
    assert m["overall"]["accuracy"]["value"] == (0.0 if wrong else 1.0)
