"""Rollout correction: every estimator against numbers worked out by hand, masking, detachment."""

from __future__ import annotations

import math
import re

import pytest

torch = pytest.importorskip("torch")

from trainers.rollout_correction import (
    PRESETS,
    RolloutCorrectionConfig,
    RolloutCorrectionConfigError,
    TensorShapeError,
    compute_rollout_correction,
    geometric_reject_mask,
    k3_reject_mask,
    masked_log_ratio,
    sequence_reject_mask,
    sequence_tis_weights,
    token_reject_mask,
    token_tis_weights,
    token_veto_mask,
)

GARBAGE = 1e4  # what env positions hold in these tests: huge, finite, must never matter


def lp(*probs: float) -> list[float]:
    return [math.log(p) for p in probs]


def close(actual: torch.Tensor, expected: list[list[float]]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype),
                               rtol=0.0, atol=1e-12)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_token_tis_truncates_at_cap_and_zeroes_env_tokens() -> None:
    # ratios 0.5/0.25 = 2, 0.2/0.4 = 0.5, 0.9/0.3 = 3; the 4th token is an env token.
    old = t([lp(0.5, 0.2, 0.9) + [GARBAGE]])
    rollout = t([lp(0.25, 0.4, 0.3) + [-GARBAGE]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = token_tis_weights(masked_log_ratio(old, rollout, mask), mask, cap=2.5)
    close(w, [[2.0, 0.5, 2.5, 0.0]])


def test_sequence_tis_uses_product_of_masked_ratios() -> None:
    # seq 0: 1.5 * 0.8 = 1.2 (env token in between ignored); seq 1: 3 * 1 = 3 -> cap 2.
    old = t([lp(0.6, 0.5, 0.4), lp(0.9, 0.5, 0.5)])
    old[0, 1] = GARBAGE
    rollout = t([lp(0.4, 0.5, 0.5), lp(0.3, 0.5, 0.5)])
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    w = sequence_tis_weights(masked_log_ratio(old, rollout, mask), mask, cap=2.0)
    close(w, [[1.2, 0.0, 1.2], [2.0, 2.0, 0.0]])


def test_token_mask_icepop_drops_tokens_outside_band() -> None:
    # ratios 1.5, 0.4, 3.0, 1.0 with band [0.5, 2]: keep, drop, drop, keep.
    old = t([lp(0.6, 0.2, 0.9, 0.7)])
    rollout = t([lp(0.4, 0.5, 0.3, 0.7)])
    mask = torch.ones(1, 4)
    keep = token_reject_mask(masked_log_ratio(old, rollout, mask), mask, 0.5, 2.0)
    assert keep.tolist() == [[True, False, False, True]]


def test_sequence_mis_rejects_whole_sequences() -> None:
    # products: 1.5 * 0.8 = 1.2 (keep), 3 * 1 = 3 (drop), 0.5 * 0.5 = 0.25 (drop)
    old = t([lp(0.6, 0.4), lp(0.9, 0.5), lp(0.2, 0.3)])
    rollout = t([lp(0.4, 0.5), lp(0.3, 0.5), lp(0.4, 0.6)])
    mask = torch.ones(3, 2)
    keep = sequence_reject_mask(masked_log_ratio(old, rollout, mask), mask, 0.5, 2.0)
    assert keep.tolist() == [[True, True], [False, False], [False, False]]


def test_geometric_mean_rejection() -> None:
    # geometric means: sqrt(1.21 * (1/1.1)) = sqrt(1.1) = 1.0488 (keep in [0.9, 1.1]),
    # sqrt(1.5 * 1.5) = 1.5 (drop), sqrt(1 * 0.64) = 0.8 (drop).
    log_ratio = t([[math.log(1.21), -math.log(1.1)], [math.log(1.5)] * 2,
                   [0.0, math.log(0.64)]])
    mask = torch.ones(3, 2)
    keep = geometric_reject_mask(log_ratio, mask, 0.9, 1.1)
    assert keep.tolist() == [[True, True], [False, False], [False, False]]
    # The product of sequence 0 is 1.1, inside [0.9, 1.1]... and 1.21 alone is outside:
    # only the mean over *masked* tokens decides.
    mask_first = torch.tensor([[1, 0], [1, 1], [1, 1]])
    assert geometric_reject_mask(log_ratio, mask_first, 0.9, 1.1)[0].tolist() == [False, False]


def test_k3_rejection() -> None:
    # k3(rho) = rho - 1 - ln rho.  seq 0: [k3(2), k3(1)] = [0.30685, 0] mean 0.15343 > 0.01
    # seq 1: [k3(1.1), 0] = [0.0046898, 0] mean 0.0023449 <= 0.01
    log_ratio = t([[math.log(2.0), 0.0], [math.log(1.1), 0.0]])
    mask = torch.ones(2, 2)
    keep = k3_reject_mask(log_ratio, mask, 0.01)
    assert keep.tolist() == [[False, False], [True, True]]
    # With threshold between the two means both survive / the first still fails.
    assert k3_reject_mask(log_ratio, mask, 0.16).all()
    assert not k3_reject_mask(log_ratio, mask, 0.15)[0].any()


def test_token_veto_rejects_sequence_with_one_tiny_ratio() -> None:
    # seq 0 has a token at ratio 1e-4 < 1e-3 -> vetoed; seq 1 min ratio 0.01 -> kept;
    # seq 2 has a tiny ratio only at an env token -> kept.
    log_ratio = t([[0.0, math.log(1e-4)], [math.log(0.01), 0.0], [0.0, math.log(1e-9)]])
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    keep = token_veto_mask(log_ratio, mask, 1e-3)
    assert keep.tolist() == [[False, False], [True, True], [True, False]]


def test_diagnostics_match_hand_computation() -> None:
    # One sequence, ratios 2 and 0.5, one env token with garbage.
    train = t([lp(0.5, 0.2) + [GARBAGE]])
    rollout = t([lp(0.25, 0.4) + [-GARBAGE]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    cfg = RolloutCorrectionConfig(is_level="token", is_cap=1.5, reject_low=0.6,
                                  reject_high=1.9)
    res = compute_rollout_correction(train, rollout, mask, cfg)
    ln2 = math.log(2.0)
    expected = {
        "kl": 0.0,                                     # mean(-ln2, +ln2)
        "k3_kl": ((1 - ln2) + (ln2 - 0.5)) / 2,        # = 0.25
        "chi2_token": (4.0 + 0.25) / 2 - 1.0,          # = 1.125
        "chi2_seq": 0.0,                               # sequence ratio 2 * 0.5 = 1
        "ess": 2.0 ** 2 / (2 * (1.5 ** 2 + 0.5 ** 2)),  # weights 1.5, 0.5 -> 0.8
        "ratio_min": 0.5, "ratio_mean": 1.25, "ratio_max": 2.0,
        "frac_above": 0.5, "frac_below": 0.5,
        "rejected_token_frac": 0.0, "rejected_seq_frac": 0.0,
        "abs_prob_diff_mean": (0.25 + 0.2) / 2, "abs_prob_diff_max": 0.25,
        "weight_mean": 1.0,
    }
    got = {k.removeprefix("rollout_corr/"): v for k, v in res.metrics.items()}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    close(res.weights, [[1.5, 0.5, 0.0]])

    # Same batch, IcePop band [0.6, 1.9]: both tokens out -> all rejected, ESS 0.
    res = compute_rollout_correction(train, rollout, mask, RolloutCorrectionConfig(
        is_level="token", reject="token", reject_low=0.6, reject_high=1.9))
    assert res.metrics["rollout_corr/rejected_token_frac"] == 1.0
    assert res.metrics["rollout_corr/rejected_seq_frac"] == 1.0
    assert res.metrics["rollout_corr/ess"] == 0.0
    assert res.mask.tolist() == [[0.0, 0.0, 0.0]]
    assert res.mask.dtype == mask.dtype


def test_chi2_seq_over_sequences() -> None:
    # sequence ratios 2 and 0.5: mean(4, 0.25) - 1 = 1.125; a third, all-env row is ignored.
    train = t([lp(0.5), lp(0.2), [GARBAGE]])
    rollout = t([lp(0.25), lp(0.4), [0.0]])
    mask = torch.tensor([[1], [1], [0]])
    res = compute_rollout_correction(train, rollout, mask, RolloutCorrectionConfig())
    assert res.metrics["rollout_corr/chi2_seq"] == pytest.approx(1.125, abs=1e-12)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_env_tokens_never_matter(name: str) -> None:
    """Garbage at mask-0 columns gives the same weights and metrics as dropping them."""
    gen = torch.Generator().manual_seed(0)
    B, T = 4, 7
    train = torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.3 - 1.0
    rollout = train + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    env_cols = [1, 4, 5]
    mask = torch.ones(B, T)
    mask[:, env_cols] = 0
    keep_cols = [c for c in range(T) if c not in env_cols]
    dirty_train, dirty_rollout = train.clone(), rollout.clone()
    dirty_train[:, env_cols] = GARBAGE
    dirty_rollout[:, env_cols] = -GARBAGE
    cfg = RolloutCorrectionConfig.preset(name)
    dirty = compute_rollout_correction(dirty_train, dirty_rollout, mask, cfg)
    clean = compute_rollout_correction(train[:, keep_cols], rollout[:, keep_cols],
                                       mask[:, keep_cols], cfg)
    assert torch.equal(dirty.weights[:, keep_cols], clean.weights)
    assert torch.equal(dirty.weights[:, env_cols], torch.zeros(B, len(env_cols),
                                                                dtype=dirty.weights.dtype))
    assert torch.equal(dirty.mask[:, keep_cols], clean.mask)
    assert not dirty.mask[:, env_cols].any()
    for key, value in clean.metrics.items():
        assert dirty.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_weights_are_detached() -> None:
    old = torch.randn(2, 3, requires_grad=True)
    rollout = torch.randn(2, 3, requires_grad=True)
    res = compute_rollout_correction(old, rollout, torch.ones(2, 3),
                                     RolloutCorrectionConfig.preset("seq_mis"))
    assert not res.weights.requires_grad
    assert not res.mask.requires_grad


def test_no_overflow_on_extreme_log_ratios() -> None:
    old = torch.tensor([[0.0, -200.0, 0.0]], dtype=torch.float32)
    rollout = torch.tensor([[-200.0, 0.0, -200.0]], dtype=torch.float32)
    res = compute_rollout_correction(old, rollout, torch.ones(1, 3),
                                     RolloutCorrectionConfig(is_level="sequence"))
    assert all(math.isfinite(v) for v in res.metrics.values())
    assert torch.isfinite(res.weights).all()
    # The sequence ratio exp(+200) is clamped at exp(20) then truncated at C = 2.
    assert res.weights.tolist() == [[2.0, 2.0, 2.0]]
    assert res.metrics["rollout_corr/ratio_max"] == pytest.approx(math.exp(20.0), rel=1e-6)


def test_on_policy_batch_is_untouched() -> None:
    logp = torch.randn(3, 5).clamp(max=-0.01)
    mask = torch.ones(3, 5)
    for name in PRESETS:
        res = compute_rollout_correction(logp, logp.clone(), mask,
                                         RolloutCorrectionConfig.preset(name))
        assert torch.equal(res.weights, torch.ones(3, 5)), name
        assert torch.equal(res.mask, mask), name
        assert res.metrics["rollout_corr/kl"] == 0.0
        assert res.metrics["rollout_corr/ess"] == 1.0


def test_all_env_batch_gives_zero_metrics() -> None:
    res = compute_rollout_correction(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2),
                                     RolloutCorrectionConfig())
    assert set(res.metrics.values()) == {0.0}
    assert not res.weights.any()


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(TensorShapeError, match=re.escape("got {'logp_train': (2, 3), "
                                                         "'logp_rollout': (2, 4)")):
        compute_rollout_correction(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3),
                                   RolloutCorrectionConfig())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "on-policy"}, ("RolloutCorrectionConfig.mode='on-policy' is invalid: must be one "
                            "of ('decoupled', 'bypass')")),
    ({"is_cap": 0.5}, "RolloutCorrectionConfig.is_cap=0.5 is invalid: must be finite and >= 1"),
    ({"reject_low": 1.0}, "RolloutCorrectionConfig.reject_low=1.0 is invalid"),
    ({"reject_high": 0.9}, "RolloutCorrectionConfig.reject_high=0.9 is invalid: must be > 1"),
    ({"veto_threshold": 0.0}, ("veto_threshold=0.0 is invalid: must be None or in (0, 1). "
                              "Use e.g. veto_threshold=1e-4")),
    ({"k3_max": -1.0}, "RolloutCorrectionConfig.k3_max=-1.0 is invalid"),
    ({"mode": "bypass", "is_level": "token"},
     ("RolloutCorrectionConfig.is_level='token' is invalid: must be 'none' when "
     "mode='bypass'")),
])
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RolloutCorrectionConfigError, match=re.escape(message)):
        RolloutCorrectionConfig(**kwargs)  # type: ignore[arg-type]


def test_presets() -> None:
    assert RolloutCorrectionConfig.preset("icepop").reject == "token"
    cfg = RolloutCorrectionConfig.preset("seq_mis", reject_high=3.0)
    assert (cfg.is_level, cfg.reject, cfg.reject_high) == ("sequence", "sequence", 3.0)
    with pytest.raises(RolloutCorrectionConfigError, match=re.escape("unknown rollout-correction"
                                                                     " preset 'tis'")):
        RolloutCorrectionConfig.preset("tis")
    with pytest.raises(RolloutCorrectionConfigError, match=re.escape("['is_capp']")):
        RolloutCorrectionConfig.preset("token_tis", is_capp=3.0)
    with pytest.raises(AttributeError):
        cfg.is_cap = 5.0  # type: ignore[misc]


# --------------------------------------------------------------------------- preset bands
#
# A synthetic trainer/sampler mismatch with a known per-token KL: trainer logits z (a
# peaked distribution over V tokens), sampler logits z + eps * noise; tokens are drawn from
# the sampler, as in a real rollout. eps = 0.05 gives KL(rollout || train) ~ 1e-3 (a healthy
# bf16 engine), 0.15 ~ 1e-2 (a broken kernel such as the sink-ignoring attention), 2.0 ~ 1
# (gross: the engine samples a different policy).


def mismatched_batch(eps: float, *, seq_len: int, batch: int = 256, vocab: int = 32,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(logp_train, logp_rollout, mask, exact mean per-token KL(rollout || train))."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, seq_len, vocab, generator=gen, dtype=torch.float64) * 2.0
    z_rollout = z + torch.randn(batch, seq_len, vocab, generator=gen, dtype=torch.float64) * eps
    lp_train, lp_rollout = z.log_softmax(-1), z_rollout.log_softmax(-1)
    tokens = torch.multinomial(lp_rollout.exp().reshape(-1, vocab), 1, generator=gen)
    tokens = tokens.reshape(batch, seq_len, 1)
    kl = float((lp_rollout.exp() * (lp_rollout - lp_train)).sum(-1).mean())
    return (lp_train.gather(-1, tokens)[..., 0].float(),
            lp_rollout.gather(-1, tokens)[..., 0].float(), torch.ones(batch, seq_len), kl)


def rejected(name: str, eps: float, seq_len: int) -> tuple[float, dict[str, float]]:
    train, rollout, mask, _ = mismatched_batch(eps, seq_len=seq_len)
    res = compute_rollout_correction(train, rollout, mask, RolloutCorrectionConfig.preset(name))
    return res.metrics["rollout_corr/rejected_token_frac"], res.metrics


REJECTING = ("token_mask", "icepop", "seq_mis", "geo_mask", "k3_mask")


@pytest.mark.parametrize(("eps", "seq_len", "kl_range"), [
    (0.05, 64, (5e-4, 2e-3)), (0.15, 64, (5e-3, 2e-2)), (0.05, 512, (5e-4, 2e-3)),
])
def test_the_synthetic_mismatch_has_the_intended_kl(eps: float, seq_len: int,
                                                    kl_range: tuple[float, float]) -> None:
    train, rollout, mask, kl = mismatched_batch(eps, seq_len=seq_len)
    assert kl_range[0] < kl < kl_range[1]
    # The low-variance estimator the trainer logs agrees with the exact KL.
    res = compute_rollout_correction(train, rollout, mask, RolloutCorrectionConfig())
    assert res.metrics["rollout_corr/k3_kl"] == pytest.approx(kl, rel=0.1)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize(("eps", "seq_len"), [(0.05, 64), (0.15, 64), (0.05, 512)])
def test_presets_keep_nearly_everything_at_a_realistic_mismatch(name: str, eps: float,
                                                                seq_len: int) -> None:
    # Token-level rules and length-normalised sequence rules: < 1% dropped. Sequence MIS
    # compares a product of seq_len ratios, whose spread grows as sqrt(seq_len * KL): it
    # may drop more, but must keep most.
    limit = 0.25 if name == "seq_mis" else 0.01
    frac, metrics = rejected(name, eps, seq_len)
    assert frac < limit, (name, frac)
    # Weighting presets keep the weights near 1 (sequence weights, products of seq_len
    # ratios, spread more).
    floor = {"token_tis": 0.9, "icepop": 0.9, "seq_tis": 0.5, "seq_mis": 0.5}.get(name)
    if floor is not None:
        assert metrics["rollout_corr/weight_mean"] > floor, (name, metrics)


@pytest.mark.parametrize("name", REJECTING)
def test_rejecting_presets_drop_most_of_a_gross_mismatch(name: str) -> None:
    frac, _ = rejected(name, 2.0, 64)
    assert frac > 0.6, (name, frac)


def test_tis_presets_shrink_the_weights_of_a_gross_mismatch() -> None:
    # Truncation rejects nothing; the weights carry the correction instead.
    for name, limit in (("token_tis", 0.7), ("seq_tis", 0.05)):
        frac, metrics = rejected(name, 2.0, 64)
        assert frac == 0.0
        assert metrics["rollout_corr/weight_mean"] < limit, (name, metrics)
        assert rejected(name, 0.05, 64)[1]["rollout_corr/weight_mean"] > 0.9


def test_token_veto_drops_only_catastrophic_sequences() -> None:
    assert rejected("token_veto", 2.0, 64)[0] < 0.2  # gross but not catastrophic: kept
    # A sampler whose logits are unrelated to the trainer's puts mass where the trainer
    # has almost none (rho_t < 1e-4 somewhere in most sequences): vetoed.
    assert rejected("token_veto", 24.0, 64)[0] > 0.6


def test_verl_tight_geometric_band_rejects_a_healthy_mismatch_at_short_lengths() -> None:
    # Why geo_mask is not verl's [0.999, 1.001]: at 64 tokens and KL ~ 1e-3 the geometric
    # mean spreads by ~0.006, so that band drops most sequences.
    train, rollout, mask, _ = mismatched_batch(0.05, seq_len=64)
    tight = RolloutCorrectionConfig(is_level="none", reject="geometric", reject_low=0.999,
                                    reject_high=1.001)
    res = compute_rollout_correction(train, rollout, mask, tight)
    assert res.metrics["rollout_corr/rejected_token_frac"] > 0.5
    assert rejected("geo_mask", 0.05, 64)[0] < 0.01


def test_icepop_weights_are_the_ratio_inside_its_band() -> None:
    cfg = RolloutCorrectionConfig.preset("icepop")
    assert (cfg.reject_low, cfg.reject_high, cfg.is_cap) == (0.5, 5.0, 5.0)
    train = t([lp(0.9, 0.4, 0.3, 0.05)])
    rollout = t([lp(0.3, 0.2, 0.9, 0.5)])  # ratios 3, 2, 1/3, 1/10
    res = compute_rollout_correction(train, rollout, torch.ones(1, 4), cfg)
    close(res.weights, [[3.0, 2.0, 0.0, 0.0]])
