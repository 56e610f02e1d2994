"""Training samples from ``Episode``s: one per segment, or one per model turn.

``Episode`` (``Segment``, ``Turn``), ``save_episodes`` / ``load_episodes`` and the file
schema live in :mod:`agent_envs.rollout.episode` (below the trainers: eval bundles and the
viewer read them without torch); they are re-exported here under their old names. This module
adds what only trainers need: ``segment_samples`` (one ``TrainSample`` per segment),
``turn_samples`` (one per model turn, with discounted returns) and ``collate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent_envs.rollout.episode import (
    SCHEMA_VERSION,
    Episode,
    EpisodeFormatError,
    Segment,
    Turn,
    load_episodes,
    save_episodes,
)

__all__ = [
    "SCHEMA_VERSION", "Episode", "EpisodeFormatError", "Segment", "TrainSample", "Turn",
    "collate", "load_episodes", "save_episodes", "segment_samples", "turn_samples",
]


# -- trainer samples ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class TrainSample:
    """One training sequence.

    Attributes:
        input_ids: Prompt then completion.
        loss_mask: Same length as ``input_ids``; 1 on tokens the policy sampled.
        sampler_logprobs: Same length; the sampler's log-probs where mask is 1, else 0.0.
        prompt_len: Number of prompt tokens at the start of ``input_ids``.
        reward: The episode's final reward.
        ret: The return credited to this sample (``reward`` for segment
            samples; ``gamma**(turns_after) * reward`` for turn samples).
        group_id: GRPO group id.
        episode_id: The source episode.
        turn: Turn index (turn samples) or -1 (segment samples).
    """

    input_ids: list[int]
    loss_mask: list[int]
    sampler_logprobs: list[float]
    prompt_len: int
    reward: float
    ret: float
    group_id: int
    episode_id: str
    turn: int = -1


def segment_samples(episodes: Iterable[Episode], *, drop_infra: bool = True) -> list[TrainSample]:
    """One sample per segment: the whole token stream, env tokens masked out.

    Args:
        episodes: The episodes.
        drop_infra: Skip episodes with ``infra_error`` (the default; learning
            reward 0 from a crashed sandbox is wrong).
    """
    out = []
    for ep in episodes:
        if drop_infra and ep.infra:
            continue
        for seg in ep.segments:
            n = len(seg.prompt)
            out.append(TrainSample(
                input_ids=seg.prompt + seg.completion,
                loss_mask=[0] * n + seg.loss_mask,
                sampler_logprobs=[0.0] * n + seg.logprobs,
                prompt_len=n, reward=ep.reward, ret=ep.reward,
                group_id=ep.group_id, episode_id=ep.episode_id,
            ))
    return out


def turn_samples(
    episodes: Iterable[Episode], *, gamma: float = 1.0, drop_infra: bool = True
) -> list[TrainSample]:
    """One sample per model turn: everything before the turn is the prompt.

    The return of turn ``t`` of ``T`` turns is ``gamma ** (T - 1 - t) * reward``
    (the final reward, discounted back from the last turn).

    Args:
        episodes: The episodes.
        gamma: Discount per turn, in [0, 1].
        drop_infra: Skip episodes with ``infra_error``.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}; use 1.0 for no discount.")
    out = []
    for ep in episodes:
        if drop_infra and ep.infra:
            continue
        n_turns = len(ep.turns)
        for t, turn in enumerate(ep.turns):
            seg = ep.segments[turn.segment]
            prompt = seg.prompt + seg.completion[: turn.start]
            sampled = seg.completion[turn.start : turn.end]
            out.append(TrainSample(
                input_ids=prompt + sampled,
                loss_mask=[0] * len(prompt) + [1] * len(sampled),
                sampler_logprobs=[0.0] * len(prompt) + seg.logprobs[turn.start : turn.end],
                prompt_len=len(prompt), reward=ep.reward,
                ret=math.pow(gamma, n_turns - 1 - t) * ep.reward,
                group_id=ep.group_id, episode_id=ep.episode_id, turn=t,
            ))
    return out


def collate(samples: Sequence[TrainSample], *, pad_id: int = 0) -> dict[str, Any]:
    """Right-pad samples into numpy arrays.

    Returns:
        ``input_ids`` (int64 [B, L]), ``attention_mask`` and ``loss_mask`` (int8),
        ``sampler_logprobs`` (float64 [B, L]), ``rewards``, ``returns``
        (float64 [B]), ``group_ids`` (int64 [B]).
    """
    import numpy as np

    if not samples:
        raise ValueError("collate() got no samples; were all episodes infra-flagged?")
    width = max(len(s.input_ids) for s in samples)
    b = len(samples)
    ids = np.full((b, width), pad_id, dtype=np.int64)
    attn = np.zeros((b, width), dtype=np.int8)
    mask = np.zeros((b, width), dtype=np.int8)
    lps = np.zeros((b, width), dtype=np.float64)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        ids[i, :n] = s.input_ids
        attn[i, :n] = 1
        mask[i, :n] = s.loss_mask
        lps[i, :n] = s.sampler_logprobs
    return {
        "input_ids": ids, "attention_mask": attn, "loss_mask": mask, "sampler_logprobs": lps,
        "rewards": np.array([s.reward for s in samples], dtype=np.float64),
        "returns": np.array([s.ret for s in samples], dtype=np.float64),
        "group_ids": np.array([s.group_id for s in samples], dtype=np.int64),
    }
