"""Shared fixtures: real episodes of each family, a JSONL of them, and two bundles to compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_envs.rollout.episode import save_episodes
from tests.agent_envs.viewer.helpers import ScriptedOracle, collect, write_test_bundle

FAMILIES = ("python-tool", "browser", "functions")


@pytest.fixture(scope="session")
def family_episodes() -> dict[str, list]:
    """Two solved and two failed episodes of each family (the same two tasks each way)."""
    return {f: collect(f, 2, ScriptedOracle()) + collect(f, 2, ScriptedOracle(wrong=True))
            for f in FAMILIES}


@pytest.fixture(scope="session")
def episodes_jsonl(family_episodes, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("episodes") / "episodes.jsonl"
    return save_episodes([e for f in FAMILIES for e in family_episodes[f]], path)


@pytest.fixture(scope="session")
def bundle_pair(tmp_path_factory) -> tuple[Path, Path]:
    """Bundle A solves all six functions tasks; bundle B fails the first three."""
    root = tmp_path_factory.mktemp("bundles")
    right = collect("functions", 6, ScriptedOracle())
    wrong = collect("functions", 6, ScriptedOracle(wrong=True))
    a = write_test_bundle(root / "model-a", right, model="model-a")
    b = write_test_bundle(root / "model-b", wrong[:3] + right[3:], model="model-b")
    return a, b
