"""Policies: sample completions (token ids + processed log-probs) for token prompts.

``Policy``, ``SampleRequest``, ``SamplingParams`` and ``Sample`` are the
interface; it lives in ``agent_envs.rollout`` (with the policy errors and the scripted
policies) and is re-exported here. Implementations are imported lazily, so importing this
package never imports torch, vLLM or Ray:

- ``TransformersPolicy`` (``trainers.policies.hf``; ``[train]`` extra),
- ``VLLMPolicy`` (``trainers.policies.vllm``; ``[gpu]`` extra),
- ``OpenAICompletionsPolicy`` (``trainers.policies.http``; core),
- ``LlamaCppPolicy`` (``trainers.policies.llamacpp``; llama.cpp's ``llama-server``, core),
- ``OraclePolicy`` (``agent_envs.rollout.scripted``; scripted correct answers),
- ``FunctionPolicy`` (``agent_envs.rollout.scripted``; wrap a Python function).
"""

from __future__ import annotations

import importlib
from typing import Any

from agent_envs.rollout.errors import (
    PolicyConfigError,
    PolicyError,
    PolicyRequestError,
    PolicyServerError,
    PolicyUnavailableError,
)
from agent_envs.rollout.policy import (
    HARMONY_STOP_TOKEN_IDS,
    EpisodeContext,
    FinishReason,
    Policy,
    Sample,
    SampleRequest,
    SamplingParams,
)
from agent_envs.rollout.scripted import FunctionPolicy, OraclePolicy

__all__ = [
    "HARMONY_STOP_TOKEN_IDS", "EpisodeContext", "FinishReason", "FunctionPolicy",
    "LlamaCppPolicy", "OpenAICompletionsPolicy", "OraclePolicy", "Policy", "PolicyConfigError",
    "PolicyError", "PolicyRequestError",
    "PolicyServerError", "PolicyUnavailableError", "Sample", "SampleRequest", "SamplingParams",
    "TransformersPolicy", "VLLMPolicy",
]

_LAZY = {
    "TransformersPolicy": ("trainers.policies.hf", "[train]"),
    "VLLMPolicy": ("trainers.policies.vllm", "[gpu]"),
    "OpenAICompletionsPolicy": ("trainers.policies.http", None),
    "LlamaCppPolicy": ("trainers.policies.llamacpp", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trainers.policies' has no attribute {name!r}")
    module, extra = _LAZY[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if extra is None:
            raise
        raise PolicyUnavailableError(
            f"{name} needs a package that is not installed ({e.name or e}); "
            f"install it with: pip install 'agent-envs{extra}'"
        ) from e
    return getattr(mod, name)
