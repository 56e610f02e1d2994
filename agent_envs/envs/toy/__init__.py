"""The toy-digit environment family: a one-token task for trainer smoke tests."""

from __future__ import annotations

from agent_envs.envs.toy.env import PREFILL_TEXT, DigitTaskSource, ToyDigitEnv

__all__ = ["PREFILL_TEXT", "DigitTaskSource", "ToyDigitEnv"]
