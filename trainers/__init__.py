"""Trainers for agent_envs: model samplers, trainer samples, GRPO / PPO, adapters.

Importing ``trainers`` is cheap: torch, transformers, vLLM and Ray are imported
lazily inside the implementations that need them. The rollout layer (``Episode``, the
``Policy`` interface, the collector, the scripted policies) lives in ``agent_envs.rollout``;
``trainers.episode``, ``trainers.rollout`` and ``trainers.policies`` re-export it.
"""
