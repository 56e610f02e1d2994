"""Fixtures for the SkyRL adapter tests (run with ``.venv-skyrl/bin/python -m pytest tests_external/skyrl``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(_ROOT.parent / "shared" / "vocab"))

try:
    import skyrl  # noqa: F401
except ImportError as e:  # pragma: no cover - the wrong interpreter
    raise RuntimeError(
        "tests_external/skyrl needs SkyRL, which lives in its own venv: run "
        "`bash scripts/setup_skyrl.sh`, then `.venv-skyrl/bin/python -m pytest tests_external/skyrl`."
    ) from e

# Before any test module imports skyrl.backends: the adapter imports SkyRL's tinker types so
# that they work on Python 3.11 (see trainers.adapters.skyrl._import_skyrl).
import agent_envs
import trainers.adapters.skyrl  # noqa: F401
from agent_envs.rollout import derive_seed
from agent_envs.tasks.base import Task

ENV_ID = "python-tool"


@pytest.fixture(scope="session")
def tasks() -> list[Task]:
    """Six python-tool training tasks with reference code and non-text answers, distinct prompts.

    Non-text answers: a final answer of plain words ("I computed it above.") then has nothing
    to extract, so an env with ``answer_retries`` asks again (a second segment).
    """
    env = agent_envs.make(ENV_ID)
    try:
        out: list[Task] = []
        seen: set[str] = set()
        i = 0
        while len(out) < 6:
            t = env.task_source.sample(derive_seed(11, "skyrl-test", i), "train")
            i += 1
            if t.solution_code and t.answer_kind != "str" and t.prompt not in seen:
                seen.add(t.prompt)
                out.append(t)
        return out
    finally:
        env.close()



def pytest_configure(config: pytest.Config) -> None:
    # SkyRL 0.3's RemoteInferenceClient reads aiohttp's deprecated ClientSession.loop; the
    # project's pytest settings make warnings errors, so this one (SkyRL's, not ours) is named.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:client.loop property is deprecated:DeprecationWarning:"
        "skyrl.backends.skyrl_train.inference_servers.remote_inference_client")
