"""trainers.policies: lazy samplers, and the old import paths of what moved to agent_envs."""

from __future__ import annotations

import re
import sys

import pytest

import agent_envs.rollout as home


def test_unknown_attribute_and_vllm_not_imported() -> None:
    import trainers.policies as tp

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tp.Nope  # noqa: B018
    assert "vllm" not in sys.modules


def test_vllm_policy_without_vllm_says_how_to_install() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the GPU suite covers VLLMPolicy")
    from trainers.policies import PolicyUnavailableError, VLLMPolicy

    with pytest.raises(PolicyUnavailableError, match=re.escape("pip install 'agent-envs[gpu]'")):
        VLLMPolicy("openai/gpt-oss-20b")


@pytest.mark.parametrize("module", ["trainers.policies", "trainers.policies.base",
                                    "trainers.policies.errors", "trainers.policies.oracle",
                                    "trainers.policies.function", "trainers.rollout",
                                    "trainers.episode", "trainers.ray_workers"])
def test_the_old_import_paths_give_the_same_objects(module: str) -> None:
    import importlib

    import agent_envs.rollout.ray_workers as ray_home

    mod = importlib.import_module(module)
    names = [n for n in mod.__all__ if hasattr(home, n) or hasattr(ray_home, n)]
    assert names, module
    for name in names:
        assert getattr(mod, name) is getattr(home, name, None) or \
            getattr(mod, name) is getattr(ray_home, name), f"{module}.{name}"
