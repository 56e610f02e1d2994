"""Losses and advantages: hand-computed examples, on-policy invariants, masking, detachment."""

from __future__ import annotations

import math
import re

import pytest

torch = pytest.importorskip("torch")

from trainers.losses import (
    LossConfig,
    LossConfigError,
    aggregate,
    aggregate_parts,
    entropy_from_logits,
    gae,
    grpo_advantages,
    kl_penalty,
    policy_loss_terms,
    ppo_loss_with_correction,
    sequence_to_token,
    value_loss_terms,
)
from trainers.rollout_correction import RolloutCorrectionConfig, TensorShapeError


def close(actual: torch.Tensor, expected: list, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype),
                               rtol=0.0, atol=atol)


def log(x: float) -> float:
    return math.log(x)


def tiny_policy_logps(seed: int = 0, B: int = 3, T: int = 6, V: int = 11
                      ) -> tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]:
    """Log-probs of sampled tokens from a real (tiny) softmax policy, with grad."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.nn.Parameter(torch.randn(B, T, V, generator=gen) * 3.0)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    return logits, logp, tokens


# --------------------------------------------------------------------------- on-policy


@pytest.mark.parametrize("correction", [None, RolloutCorrectionConfig.preset("token_tis"),
                                        RolloutCorrectionConfig.preset("seq_mis")])
def test_on_policy_ratio_is_exactly_one(correction: RolloutCorrectionConfig | None) -> None:
    _, logp_new, _ = tiny_policy_logps()
    gen = torch.Generator().manual_seed(1)
    adv = torch.randn(logp_new.shape, generator=gen) * 100.0
    mask = torch.ones_like(logp_new)
    mask[:, :2] = 0
    rollout = logp_new.detach() + 0.05 * torch.randn(logp_new.shape, generator=gen)
    out = ppo_loss_with_correction(
        logp_new, logp_new.detach(), rollout, adv, mask,
        config=LossConfig(clip_low=0.1, clip_high=0.1, dual_clip=2.0), correction=correction)
    assert out.metrics["ppo/ratio_mean"] == 1.0
    assert out.metrics["ppo/ratio_min"] == 1.0
    assert out.metrics["ppo/ratio_max"] == 1.0
    assert out.metrics["ppo/clip_frac"] == 0.0
    assert out.metrics["ppo/dual_clip_frac"] == 0.0
    assert out.metrics["ppo/approx_kl"] == 0.0
    # The on-policy loss is minus the (weighted) mean advantage.
    w = out.correction.weights if out.correction is not None else mask
    keep = (out.correction.mask if out.correction is not None else mask) != 0
    expected = -(adv * w)[keep].sum() / keep.sum()
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- policy terms


def test_decoupled_correction_hand_example() -> None:
    # token 0: rho = 0.55/0.5 = 1.1 (inside [0.8, 1.2]), w = 0.5/0.4 = 1.25 -> -1.1*1.25
    # token 1: rho = 0.75/0.5 = 1.5 -> clipped at 1.2, w = 0.5/0.5 = 1   -> -1.2
    # token 2: env token with garbage.  token-mean over 2 tokens: -1.2875
    logp_new = torch.tensor([[log(0.55), log(0.75), 50.0]], dtype=torch.float64,
                            requires_grad=True)
    logp_old = torch.tensor([[log(0.5), log(0.5), -50.0]], dtype=torch.float64)
    rollout = torch.tensor([[log(0.4), log(0.5), 1e4]], dtype=torch.float64,
                           requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1e6]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    out = ppo_loss_with_correction(
        logp_new, logp_old, rollout, adv, mask, config=LossConfig(),
        correction=RolloutCorrectionConfig(is_level="token", is_cap=2.0))
    assert out.loss.item() == pytest.approx(-1.2875, abs=1e-12)
    assert out.metrics["ppo/clip_frac"] == 0.5
    assert out.metrics["ppo/clip_frac_high"] == 0.5
    assert out.metrics["ppo/clip_frac_low"] == 0.0
    assert out.metrics["rollout_corr/weight_mean"] == pytest.approx(1.125, abs=1e-12)
    out.loss.backward()
    # d/dlogp of -rho*w*A/N = -rho*w*A/N for the unclipped token; clipped and env: 0.
    close(logp_new.grad, [[-1.1 * 1.25 / 2, 0.0, 0.0]], atol=1e-12)
    assert rollout.grad is None  # weights are detached: no path back to logp_rollout
    assert not out.correction.weights.requires_grad


def test_bypass_mode_anchors_ratio_on_rollout() -> None:
    _, logp_new, _ = tiny_policy_logps(seed=3)
    gen = torch.Generator().manual_seed(4)
    rollout = (logp_new.detach() + 0.1 * torch.randn(logp_new.shape, generator=gen))
    adv = torch.randn(logp_new.shape, generator=gen)
    mask = torch.ones_like(logp_new)
    cfg = LossConfig(clip_low=0.05, clip_high=0.05)
    bypass = ppo_loss_with_correction(
        logp_new, None, rollout, adv, mask, config=cfg,
        correction=RolloutCorrectionConfig(mode="bypass", is_level="none"))
    plain = ppo_loss_with_correction(logp_new, rollout, None, adv, mask, config=cfg)
    assert torch.equal(bypass.loss, plain.loss)
    assert bypass.metrics["ppo/clip_frac"] == plain.metrics["ppo/clip_frac"] > 0.0
    # Rejections in bypass mode compare the current policy with the sampler.
    rollout_far = rollout.clone()
    rollout_far[0, 0] = logp_new[0, 0].detach() - 5.0  # ratio e^5 ~ 148: outside [0.5, 2]
    out = ppo_loss_with_correction(
        logp_new, None, rollout_far, adv, mask, config=cfg,
        correction=RolloutCorrectionConfig(mode="bypass", is_level="none", reject="token"))
    assert out.correction.mask[0, 0] == 0
    assert out.metrics["rollout_corr/rejected_token_frac"] == pytest.approx(1 / mask.numel())


def test_rejected_tokens_leave_the_denominator() -> None:
    # ratios pi_old/pi_rollout: 1, 1, 5 (rejected by IcePop [0.5, 2]); on-policy step.
    logp_new = torch.tensor([[log(0.5), log(0.2), log(0.5)]], dtype=torch.float64,
                            requires_grad=True)
    rollout = torch.tensor([[log(0.5), log(0.2), log(0.1)]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 3.0, 100.0]], dtype=torch.float64)
    out = ppo_loss_with_correction(
        logp_new, logp_new.detach(), rollout, adv, torch.ones(1, 3), config=LossConfig(),
        correction=RolloutCorrectionConfig.preset("token_mask"))
    assert out.loss.item() == pytest.approx(-(1.0 + 3.0) / 2, abs=1e-12)


def test_asymmetric_and_dual_clip_hand_examples() -> None:
    # rho = 1.25, A = +1: clip_high 0.28 leaves it, clip_high 0.2 clips to 1.2.
    # rho = 0.75, A = -1: below 1 - 0.2 -> clipped: -min(-0.75, -0.8) = 0.8.
    # rho = 5,    A = -1: plain PPO loss 5; dual clip c = 3 caps it at 3.
    new = torch.tensor([[log(1.25), log(0.75), log(5.0)]], dtype=torch.float64)
    old = torch.zeros(1, 3, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones(1, 3)
    loss, parts = policy_loss_terms(new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    close(loss, [[-1.25, 0.8, 5.0]], atol=1e-12)
    assert parts["clipped_high"].tolist() == [[False, False, False]]
    assert parts["clipped_low"].tolist() == [[False, True, False]]
    loss, parts = policy_loss_terms(new, old, adv, mask, clip_low=0.2, clip_high=0.2,
                                    dual_clip=3.0)
    close(loss, [[-1.2, 0.8, 3.0]], atol=1e-12)
    assert parts["clipped_high"].tolist() == [[True, False, False]]
    assert parts["dual_clipped"].tolist() == [[False, False, True]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_env_tokens_never_affect_loss_or_grads(dtype: torch.dtype) -> None:
    B, T = 3, 8
    mask = torch.ones(B, T)
    mask[:, [0, 3, 4]] = 0
    mask[2, 6:] = 0

    def run(garbage: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        g = torch.Generator().manual_seed(5)
        base = {k: torch.randn(B, T, generator=g, dtype=dtype) * 0.2 for k in
                ("new", "old", "rollout", "ref", "vals", "vals_old", "ret", "ent")}
        adv = torch.randn(B, T, generator=g, dtype=dtype)
        if garbage:
            env = mask == 0
            for i, k in enumerate(base):
                base[k] = torch.where(env, torch.full_like(base[k], (-1) ** i * 60.0), base[k])
            adv = torch.where(env, torch.full_like(adv, 1e6), adv)
        new = base["new"].requires_grad_(True)
        vals = base["vals"].requires_grad_(True)
        ent = base["ent"].requires_grad_(True)
        out = ppo_loss_with_correction(
            new - 1.0, base["old"] - 1.0, base["rollout"] - 1.0, adv, mask,
            config=LossConfig(dual_clip=3.0, entropy_coef=0.01, kl_coef=0.1,
                              agg_mode="seq-mean-token-mean"),
            correction=RolloutCorrectionConfig.preset("icepop"), entropy=ent,
            logp_ref=base["ref"] - 1.0, values=vals, values_old=base["vals_old"],
            returns=base["ret"])
        out.loss.backward()
        return out.loss.detach(), new.grad, vals.grad, out.metrics

    loss_a, g_new_a, g_val_a, m_a = run(False)
    loss_b, g_new_b, g_val_b, m_b = run(True)
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(g_new_a, g_new_b)
    assert torch.equal(g_val_a, g_val_b)
    assert not g_new_b[mask == 0].any()
    assert g_new_b[mask != 0].abs().sum() > 0
    assert m_a == m_b


def test_missing_inputs_are_named() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(LossConfigError, match=re.escape("mode 'decoupled' needs logp_old")):
        ppo_loss_with_correction(x, None, x, x, x, config=LossConfig(),
                                 correction=RolloutCorrectionConfig())
    with pytest.raises(LossConfigError, match=re.escape("kl_coef=0.1 needs logp_ref")):
        ppo_loss_with_correction(x, x, None, x, x, config=LossConfig(kl_coef=0.1))
    with pytest.raises(LossConfigError, match=re.escape("needs values, values_old and returns")):
        ppo_loss_with_correction(x, x, None, x, x, config=LossConfig(), values=x)
    with pytest.raises(TensorShapeError, match=re.escape("'advantages': (1, 3)")):
        ppo_loss_with_correction(x, x, None, torch.zeros(1, 3), x, config=LossConfig())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clip_low": 1.0}, "LossConfig.clip_low=1.0 is invalid: must be in [0, 1)"),
    ({"dual_clip": 0.5}, ("LossConfig.dual_clip=0.5 is invalid: must be None or a finite "
                         "number > 1. Use e.g. dual_clip=3.0")),
    ({"agg_mode": "mean"}, "LossConfig.agg_mode='mean' is invalid"),
    ({"norm_length": 512}, ("LossConfig.norm_length=512 is invalid: is only used by "
                           "agg_mode='seq-mean-token-sum-norm'")),
    ({"kl_estimator": "k4"}, "LossConfig.kl_estimator='k4' is invalid"),
    ({"entropy_coef": -0.1}, "LossConfig.entropy_coef=-0.1 is invalid: must be finite and >= 0"),
])
def test_loss_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(LossConfigError, match=re.escape(message)):
        LossConfig(**kwargs)


# --------------------------------------------------------------------------- aggregation


def test_aggregation_modes_hand_example() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert aggregate(loss, mask, "token-mean").item() == 2.5            # 10 / 4 tokens
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == 5.0    # (6 + 4) / 2
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == 3.0   # (2 + 4) / 2
    assert aggregate(loss, mask, "seq-mean-token-sum-norm").item() == 1.25  # 10 / (2 * 4)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm_length=10).item() == 0.5
    # An all-masked row is not a sequence.
    loss3 = torch.cat([loss, torch.full((1, 4), 7.0)])
    mask3 = torch.cat([mask, torch.zeros(1, 4, dtype=mask.dtype)])
    assert aggregate(loss3, mask3, "seq-mean-token-mean").item() == 3.0
    with pytest.raises(LossConfigError, match=re.escape("aggregation mode 'sum' is invalid")):
        aggregate(loss, mask, "sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                  "seq-mean-token-sum-norm"])
def test_aggregate_parts_of_microbatches_add_up_to_the_whole(mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    loss = torch.randn(6, 5, generator=gen)
    mask = (torch.rand(6, 5, generator=gen) > 0.4).long()
    mask[2] = 0  # an all-masked row (no sequence) inside one microbatch
    whole = aggregate(loss, mask, mode, norm_length=5)  # type: ignore[arg-type]
    parts = [aggregate_parts(loss[i:i + 2], mask[i:i + 2], mode, norm_length=5)  # type: ignore[arg-type]
             for i in range(0, 6, 2)]
    num = sum(p[0] for p in parts)
    den = sum(int(p[1]) for p in parts)
    torch.testing.assert_close(num / den, whole, rtol=1e-6, atol=0.0)
    # The denominator is unclamped: an all-masked microbatch adds nothing.
    assert int(aggregate_parts(loss[2:3], mask[2:3], mode, norm_length=5)[1]) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_loss_sum_over_denominator_is_the_loss_and_exactness_metrics(mode: str) -> None:
    _, logp_new, _ = tiny_policy_logps(seed=4)
    gen = torch.Generator().manual_seed(5)
    adv = torch.randn(logp_new.shape, generator=gen)
    mask = torch.ones_like(logp_new)
    mask[0, :3] = 0
    values = torch.randn(logp_new.shape, generator=gen, requires_grad=True)
    kw = {"values": values, "values_old": values.detach() + 0.1,
          "returns": torch.randn(logp_new.shape, generator=gen),
          "entropy": torch.rand(logp_new.shape, generator=gen),
          "logp_ref": logp_new.detach() - 0.2}
    cfg = LossConfig(agg_mode=mode, entropy_coef=0.01, kl_coef=0.1)  # type: ignore[arg-type]
    # Sampler log-probs equal to pi_old: every weight is exactly 1.
    same = ppo_loss_with_correction(logp_new, logp_new.detach(), logp_new.detach().clone(),
                                    adv, mask, config=cfg,
                                    correction=RolloutCorrectionConfig.preset("token_tis"), **kw)
    torch.testing.assert_close(same.loss_sum / same.denominator, same.loss, rtol=1e-6, atol=0)
    assert same.metrics["ppo/ratio_max_abs_dev"] == 0.0
    assert same.metrics["rollout_corr/is_weight_max_abs_dev"] == 0.0
    assert same.metrics["rollout_corr/logp_abs_diff_max"] == 0.0
    # One sampler log-prob off by 0.01: the metrics see exactly that token.
    rollout = logp_new.detach().clone()
    rollout[1, 4] -= 0.01
    off = ppo_loss_with_correction(logp_new, logp_new.detach(), rollout, adv, mask, config=cfg,
                                   correction=RolloutCorrectionConfig.preset("token_tis"), **kw)
    assert off.metrics["ppo/ratio_max_abs_dev"] == 0.0
    assert off.metrics["rollout_corr/is_weight_max_abs_dev"] == pytest.approx(
        math.expm1(0.01), rel=1e-4)
    assert off.metrics["rollout_corr/logp_abs_diff_max"] == pytest.approx(0.01, rel=1e-4)
    # Against pi_old off by 0.05 at one token: the PPO ratio deviation shows it.
    old = logp_new.detach().clone()
    old[2, 5] += 0.05
    moved = ppo_loss_with_correction(logp_new, old, None, adv, mask, config=cfg, **kw)
    assert moved.metrics["ppo/ratio_max_abs_dev"] == pytest.approx(-math.expm1(-0.05), rel=1e-4)


# --------------------------------------------------------------------------- advantages


def test_gae_hand_example_skips_env_tokens() -> None:
    # Steps at t = 0, 1, 3 (t = 2 is an env token holding garbage); gamma .9, lam .8.
    # t3: delta = 1 - 0.8 = 0.2                       A = 0.2
    # t1: delta = 0 + 0.9*0.8 - 0.6 = 0.12            A = 0.12 + 0.72*0.2   = 0.264
    # t0: delta = 0 + 0.9*0.6 - 0.5 = 0.04            A = 0.04 + 0.72*0.264 = 0.23008
    rewards = torch.tensor([[0.0, 0.0, 99.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 77.0, 0.8]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    close(adv, [[0.23008, 0.264, 0.0, 0.2]], atol=1e-12)
    close(ret, [[0.73008, 0.864, 0.0, 1.0]], atol=1e-12)
    # gamma = lam = 1: A_t = (sum of future rewards) - V_t.
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    close(adv, [[0.5, 0.4, 0.0, 0.2]], atol=1e-12)
    close(ret, [[1.0, 1.0, 0.0, 1.0]], atol=1e-12)
    with pytest.raises(LossConfigError, match=re.escape("gamma=1.5 is invalid: must be in [0, 1]")):
        gae(rewards, values, mask, gamma=1.5)


def test_grpo_advantages_hand_example() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 5.0], [3.0, 3.0, 3.0, 3.0]])
    # row 1: mean 2.75, unbiased std sqrt((3*0.75^2 + 2.25^2)/3) = 1.5
    # row 0: mean 0.5, unbiased std sqrt(4*0.25/3) = 0.57735
    s0 = 0.5 / math.sqrt(1.0 / 3.0)
    adv = grpo_advantages(rewards, eps=0.0)
    close(adv[:2], [[s0, -s0, -s0, s0], [-0.5, -0.5, -0.5, 1.5]])
    assert torch.equal(grpo_advantages(rewards)[2], torch.zeros(4))  # all-equal group
    close(grpo_advantages(rewards, scale_by_std=False),
          [[0.5, -0.5, -0.5, 0.5], [-0.75, -0.75, -0.75, 2.25], [0.0] * 4])


def test_grpo_advantages_with_group_ids_match_rows_and_sum_to_zero() -> None:
    gen = torch.Generator().manual_seed(7)
    groups, G = 5, 6
    rows = torch.randint(0, 2, (groups, G), generator=gen).float() + torch.rand(
        groups, G, generator=gen)
    perm = torch.randperm(groups * G, generator=gen)
    flat = rows.reshape(-1)[perm]
    ids = (torch.arange(groups).repeat_interleave(G) * 11 + 3)[perm]  # arbitrary labels
    for scale in (True, False):
        flat_adv = grpo_advantages(flat, ids, scale_by_std=scale)
        row_adv = grpo_advantages(rows, scale_by_std=scale)
        torch.testing.assert_close(flat_adv, row_adv.reshape(-1)[perm])
        for label in ids.unique():
            assert abs(float(flat_adv[ids == label].sum())) < 1e-5
    # A singleton group gets 0, not NaN.
    adv = grpo_advantages(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 0, 1]))
    assert adv[2].item() == 0.0 and torch.isfinite(adv).all()
    with pytest.raises(LossConfigError, match=re.escape("1-D rewards need group_ids")):
        grpo_advantages(torch.tensor([1.0, 2.0]))


def test_sequence_to_token() -> None:
    out = sequence_to_token(torch.tensor([2.0, -1.0]), torch.tensor([[1, 0, 1], [0, 1, 1]]))
    assert out.tolist() == [[2.0, 0.0, 2.0], [0.0, -1.0, -1.0]]


# --------------------------------------------------------------------------- other terms


def test_kl_estimators_hand_example() -> None:
    # x = log(pi_ref/pi) = log(0.25/0.5) = -ln 2
    new = torch.tensor([[log(0.5)]], dtype=torch.float64)
    ref = torch.tensor([[log(0.25)]], dtype=torch.float64)
    ln2 = math.log(2.0)
    assert kl_penalty(new, ref, "k1").item() == pytest.approx(ln2, abs=1e-12)
    assert kl_penalty(new, ref, "k2").item() == pytest.approx(0.5 * ln2 ** 2, abs=1e-12)
    assert kl_penalty(new, ref, "k3").item() == pytest.approx(0.5 - 1.0 + ln2, abs=1e-12)


def test_value_loss_clipping_hand_example() -> None:
    # v = 1.5 around v_old = 1.0 clipped to 1.2: max((1.5-2)^2, (1.2-2)^2)/2 = 0.32
    # v = 0.9, v_old = 1.0, R = 1.0: inside the clip, (0.1)^2 / 2 = 0.005
    v = torch.tensor([[1.5, 0.9]], dtype=torch.float64)
    loss, clipped = value_loss_terms(v, torch.tensor([[1.0, 1.0]], dtype=torch.float64),
                                     torch.tensor([[2.0, 1.0]], dtype=torch.float64),
                                     torch.ones(1, 2), clip=0.2)
    close(loss, [[0.32, 0.005]], atol=1e-12)
    assert clipped.tolist() == [[True, False]]


def test_entropy_from_logits() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    ent = entropy_from_logits(logits)
    assert ent[0].item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert ent[1].item() == pytest.approx(0.0, abs=1e-6)


def test_a_few_grpo_steps_change_params_and_raise_reward_logp() -> None:
    """Tiny end-to-end: advantages from rewards, a few clipped steps, metrics finite."""
    logits, _, tokens = tiny_policy_logps(seed=9, B=4, T=5, V=7)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    adv = sequence_to_token(grpo_advantages(rewards, torch.zeros(4, dtype=torch.long)),
                            torch.ones(4, 5))
    opt = torch.optim.SGD([logits], lr=0.5)
    start = logits.detach().clone()

    def logp() -> torch.Tensor:
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)

    with torch.no_grad():
        logp_old = logp()
    before = logp_old[rewards == 1].sum() - logp_old[rewards == 0].sum()
    for _ in range(4):
        out = ppo_loss_with_correction(logp(), logp_old, logp_old, adv, torch.ones(4, 5),
                                       config=LossConfig(clip_high=0.28),
                                       correction=RolloutCorrectionConfig.preset("token_tis"))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert all(math.isfinite(v) for v in out.metrics.values())
    with torch.no_grad():
        after_lp = logp()
    after = after_lp[rewards == 1].sum() - after_lp[rewards == 0].sum()
    assert not torch.equal(start, logits.detach())
    assert after > before
    assert out.metrics["ppo/ratio_mean"] != 1.0  # later epochs are off-policy
