"""Trainer samples from episodes: one per segment, one per turn (discounted), collated."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.agent_envs.rollout.test_episode import collected  # noqa: F401 - the fixture
from trainers.episode import collate, segment_samples, turn_samples


def test_segment_and_turn_samples(collected) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    eps, _ = collected
    ok = [e for e in eps if not e.infra]
    segs = segment_samples(eps)
    assert len(segs) == sum(len(e.segments) for e in ok)  # infra episode dropped
    assert len(segment_samples(eps, drop_infra=False)) == sum(len(e.segments) for e in eps)
    s0, e0 = segs[0], ok[0]
    assert s0.input_ids == e0.segments[0].prompt + e0.segments[0].completion
    assert sum(s0.loss_mask) == e0.num_sampled_tokens and s0.loss_mask[: s0.prompt_len] == [0] * s0.prompt_len

    gamma = 0.5
    turns = turn_samples(eps, gamma=gamma)
    assert len(turns) == sum(len(e.turns) for e in ok)
    t0, t1 = turns[0], turns[1]  # the oracle: a python call, then the final answer
    assert (t0.turn, t1.turn) == (0, 1) and t0.episode_id == t1.episode_id == e0.episode_id
    assert t0.ret == pytest.approx(gamma * e0.reward) and t1.ret == e0.reward == 1.0
    seg = e0.segments[0]
    tr = e0.turns[1]
    assert t1.input_ids == seg.prompt + seg.completion[: tr.end]
    assert sum(t1.loss_mask) == tr.end - tr.start
    assert t1.sampler_logprobs[-1] == seg.logprobs[tr.end - 1]
    with pytest.raises(ValueError, match=re.escape("gamma must be in [0, 1], got 1.5")):
        turn_samples(eps, gamma=1.5)

    batch = collate(turns, pad_id=0)
    assert batch["input_ids"].shape == batch["loss_mask"].shape == batch["sampler_logprobs"].shape
    assert batch["loss_mask"].sum() == sum(sum(t.loss_mask) for t in turns)
    assert np.allclose(batch["returns"], [t.ret for t in turns])
