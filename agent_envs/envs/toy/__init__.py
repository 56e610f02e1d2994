"""The toy environment family: tiny tasks a random tiny model can learn (trainer tests).

``toy-digit``: one digit (two sampled tokens). ``toy-pattern``: a digit pattern L tokens
long, with a dense per-position reward.
"""

from __future__ import annotations

from agent_envs.envs.toy.env import PREFILL_TEXT, DigitTaskSource, ToyDigitEnv
from agent_envs.envs.toy.pattern import PatternTaskSource, ToyPatternEnv, pattern_score

__all__ = [
    "PREFILL_TEXT", "DigitTaskSource", "PatternTaskSource", "ToyDigitEnv", "ToyPatternEnv",
    "pattern_score",
]
