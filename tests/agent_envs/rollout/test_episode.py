"""Episode records: file round trips, loss masks (trainer samples: tests/trainers)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pytest

from agent_envs.rollout import (
    SCHEMA_VERSION,
    Episode,
    EpisodeFormatError,
    OraclePolicy,
    RolloutCollector,
    RolloutConfig,
    Sample,
    SampleRequest,
    load_episodes,
    save_episodes,
)


class RecordingOracle(OraclePolicy):
    """The oracle, with irregular float64 log-probs, remembering what it sampled per episode."""

    def __init__(self) -> None:
        super().__init__()
        self.sampled: dict[str, list[int]] = {}
        self._rng = np.random.default_rng(0)

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for r, s in zip(requests, super().sample(requests)):
            lps = (-self._rng.random(len(s.token_ids)) * 7.3).tolist()  # full float64 mantissas
            out.append(Sample(token_ids=s.token_ids, logprobs=lps, finish_reason=s.finish_reason))
            self.sampled.setdefault(r.context.episode_id, []).extend(s.token_ids)
        return out


@pytest.fixture(scope="module")
def collected() -> tuple[list[Episode], RecordingOracle]:
    policy = RecordingOracle()
    cfg = RolloutConfig(env_id="python-tool", num_groups=3, group_size=2, concurrency=6,
                        progress=False, seed=11)
    eps = RolloutCollector(policy, cfg).collect()
    # One infra-flagged episode with a multi-segment shape, to round-trip every field type.
    eps[-1].infra_error = "SandboxError: zygote died"
    eps[-1].meta["note"] = {"nested": [1, 2.5, None]}
    return eps, policy


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_round_trip_is_exact(tmp_path, collected, suffix) -> None:  # type: ignore[no-untyped-def]
    eps, _ = collected
    path = save_episodes(eps, tmp_path / f"eps{suffix}")
    back = load_episodes(path)
    assert back == eps  # dataclass equality: every field, floats compared exactly
    lp_a = [x for e in eps for s in e.segments for x in s.logprobs]
    lp_b = [x for e in back for s in e.segments for x in s.logprobs]
    assert np.array_equal(np.array(lp_a), np.array(lp_b)) and any(x != 0.0 for x in lp_a)


def test_jsonl_records_carry_schema_version(tmp_path, collected) -> None:  # type: ignore[no-untyped-def]
    eps, _ = collected
    path = save_episodes(eps, tmp_path / "e.jsonl")
    rec = json.loads(path.read_text().splitlines()[0])
    assert rec["schema_version"] == SCHEMA_VERSION
    rec["schema_version"] = 99
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(EpisodeFormatError, match=re.escape("schema_version=99, this code reads 1")):
        load_episodes(path)


def test_unknown_extension_is_refused(tmp_path, collected) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EpisodeFormatError, match=re.escape("must end in .jsonl, .jsonl.gz or .parquet")):
        save_episodes(collected[0], tmp_path / "e.csv")


def test_loss_mask_covers_exactly_the_sampled_tokens(collected) -> None:  # type: ignore[no-untyped-def]
    eps, policy = collected
    for ep in eps:
        seg_tokens = []
        for si, seg in enumerate(ep.segments):
            assert len(seg.completion) == len(seg.loss_mask) == len(seg.logprobs)
            mask = np.array(seg.loss_mask)
            from_turns = np.zeros_like(mask)
            for t in ep.turns:
                if t.segment == si:
                    from_turns[t.start : t.end] = 1
                    assert t.end - t.start > 0
            assert np.array_equal(mask, from_turns)  # mask == union of the turns' spans
            assert all(lp == 0.0 for lp, m in zip(seg.logprobs, seg.loss_mask) if m == 0)
            seg_tokens += [tok for tok, m in zip(seg.completion, seg.loss_mask) if m]
        assert seg_tokens == policy.sampled[ep.episode_id]  # exactly what the policy sampled
        assert sum(t.env_tokens for t in ep.turns) == sum(
            len(s.loss_mask) - sum(s.loss_mask) for s in ep.segments)
