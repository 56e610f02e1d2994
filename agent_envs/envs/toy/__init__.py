"""The toy environment family: tiny tasks a random tiny model can learn (trainer tests).

``toy-digit``: one digit (two sampled tokens). ``toy-pattern``: a digit pattern L tokens
long, with a dense per-position reward. ``toy-cycle``: continue a hidden digit cycle from
a start digit the env writes (constants and short loops score 0).
"""

from __future__ import annotations

from agent_envs.envs.toy.cycle import CycleTaskSource, ToyCycleEnv, cycle_score, trivial_scores
from agent_envs.envs.toy.env import (
    PREFILL_TEXT,
    DigitTaskSource,
    ToyDigitEnv,
    ToyOracle,
    ToyTask,
)
from agent_envs.envs.toy.pattern import PatternTaskSource, ToyPatternEnv, pattern_score
from agent_envs.oracle import register_oracle

__all__ = [
    "PREFILL_TEXT", "VERIFIER_VERSION", "CycleTaskSource", "DigitTaskSource",
    "PatternTaskSource", "ToyCycleEnv", "ToyDigitEnv", "ToyOracle", "ToyPatternEnv", "ToyTask",
    "cycle_score", "pattern_score", "trivial_scores",
]

#: Bump whenever a toy verdict can change; eval suites pin it.
VERIFIER_VERSION = "toy-1"

register_oracle(ToyTask, ToyOracle)
