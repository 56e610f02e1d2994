"""The rollout layer: episodes, the policy interface, the collector and scripted policies.

Everything a run of episodes needs short of a model, without torch:

- ``Episode`` (``Segment``, ``Turn``) and ``save_episodes`` / ``load_episodes``
  (:mod:`agent_envs.rollout.episode`);
- the ``Policy`` interface (``SampleRequest``, ``SamplingParams``, ``Sample``,
  ``EpisodeContext``) and the policy errors (:mod:`agent_envs.rollout.policy`,
  :mod:`agent_envs.rollout.errors`);
- ``RolloutCollector`` and ``RolloutConfig`` (:mod:`agent_envs.rollout.collector`; Ray env
  workers in :mod:`agent_envs.rollout.ray_workers`);
- ``OraclePolicy`` and ``FunctionPolicy`` (:mod:`agent_envs.rollout.scripted`);
- ``policy_from_spec`` (:mod:`agent_envs.rollout.specs`): ``oracle``, ``py:MODULE:FACTORY``
  and the schemes packages register (``hf:``, ``vllm:``, ``http://``, ``llamacpp:`` come from
  ``trainers``, see :mod:`agent_envs.plugins`).

The samplers of real models stay in ``trainers.policies``; ``trainers`` re-exports every name
here under its old path (``trainers.episode``, ``trainers.rollout``, ``trainers.policies``).
"""

from __future__ import annotations

from agent_envs.rollout.collector import (
    LocalEnvHandle,
    RolloutCollector,
    RolloutConfig,
    derive_seed,
    draw_tasks,
    run_rollout_cli,
    summarize,
)
from agent_envs.rollout.episode import (
    SCHEMA_VERSION,
    Episode,
    Segment,
    Turn,
    load_episodes,
    save_episodes,
)
from agent_envs.rollout.errors import (
    EpisodeFormatError,
    PolicyConfigError,
    PolicyError,
    PolicyRequestError,
    PolicyServerError,
    PolicyUnavailableError,
    RolloutConfigError,
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
from agent_envs.rollout.specs import policy_from_spec

__all__ = [
    "HARMONY_STOP_TOKEN_IDS", "SCHEMA_VERSION", "Episode", "EpisodeContext",
    "EpisodeFormatError", "FinishReason", "FunctionPolicy", "LocalEnvHandle", "OraclePolicy",
    "Policy", "PolicyConfigError", "PolicyError", "PolicyRequestError", "PolicyServerError",
    "PolicyUnavailableError", "RolloutCollector", "RolloutConfig", "RolloutConfigError",
    "Sample", "SampleRequest", "SamplingParams", "Segment", "Turn", "derive_seed", "draw_tasks",
    "load_episodes", "policy_from_spec", "run_rollout_cli", "save_episodes", "summarize",
]
