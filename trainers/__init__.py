"""Trainers for agent_envs: policies, rollouts, episodes, GRPO / PPO.

Importing ``trainers`` is cheap: torch, transformers, vLLM and Ray are imported
lazily inside the implementations that need them.
"""
