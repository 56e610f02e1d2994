"""The ``Policy`` interface, re-exported from :mod:`agent_envs.rollout.policy` (its home).

The interface needs no torch, so it lives below the trainers (the collector, the eval runner
and the scripted policies use it); the samplers in ``trainers.policies`` subclass it.
"""

from __future__ import annotations

from agent_envs.rollout.policy import (
    HARMONY_STOP_TOKEN_IDS,
    EpisodeContext,
    FinishReason,
    Policy,
    Sample,
    SampleRequest,
    SamplingParams,
)

__all__ = [
    "HARMONY_STOP_TOKEN_IDS", "EpisodeContext", "FinishReason", "Policy", "Sample", "SampleRequest",
    "SamplingParams",
]
