"""Advantages and losses for GRPO and PPO, with rollout correction. Pure tensor functions.

Shapes: ``B`` sequences of ``T`` tokens; every per-token tensor is ``[B, T]`` and comes
with a loss ``mask`` (1 on tokens the policy sampled, 0 on prompt, env and padding
tokens). Masked-out positions never reach a loss, a gradient or a metric, whatever
values they hold.

Read top to bottom: advantages (GRPO groups, GAE), the per-token pieces (policy
clip, value clip, entropy, KL to a reference), the aggregation over tokens, then
:func:`ppo_loss_with_correction`, which a trainer calls once per minibatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from trainers.rollout_correction import (
    CorrectionResult,
    RolloutCorrectionConfig,
    RolloutCorrectionError,
    TensorShapeError,
    compute_rollout_correction,
)

__all__ = [
    "AggMode",
    "KLEstimator",
    "LossConfig",
    "LossConfigError",
    "LossOutput",
    "aggregate",
    "aggregate_parts",
    "entropy_from_logits",
    "gae",
    "grpo_advantages",
    "kl_penalty",
    "masked_mean",
    "policy_loss_terms",
    "ppo_loss_with_correction",
    "sequence_to_token",
    "value_loss_terms",
]

AggMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                  "seq-mean-token-sum-norm"]
KLEstimator = Literal["k1", "k2", "k3"]
_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
              "seq-mean-token-sum-norm")
_KL_ESTIMATORS = ("k1", "k2", "k3")


class LossConfigError(RolloutCorrectionError):
    """A :class:`LossConfig` field, or an argument of a loss function, is invalid."""


def _check_same_shape(**tensors: torch.Tensor | None) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise TensorShapeError(
            f"expected tensors of one shape [B, T], got {shapes}. Pad every tensor to the "
            f"same [batch, tokens] layout as the loss mask."
        )


# --------------------------------------------------------------------------- advantages


def grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor | None = None, *,
    scale_by_std: bool = True, eps: float = 1e-6,
) -> torch.Tensor:
    """GRPO group-relative advantages: ``(r - mean_group) / (std_group + eps)``.

    Args:
        rewards: ``[N]`` with ``group_ids``, or ``[num_groups, G]`` (one row per group).
        group_ids: ``[N]`` integer group of each reward (any labels); required for 1-D
            rewards, not allowed for 2-D.
        scale_by_std: divide by the group's (unbiased) standard deviation. ``False`` is
            Dr. GRPO: only mean-centred, no per-group rescaling.
        eps: added to the std to avoid division by zero in all-equal groups.

    Returns:
        Advantages with the shape of ``rewards`` (float32, or float64 for float64 input).
        They sum to zero within each group; groups of one sample get 0.

    Raises:
        LossConfigError: wrong combination of shapes and ``group_ids``, or ``eps < 0``.
    """
    if eps < 0 or not math.isfinite(eps):
        raise LossConfigError(f"eps={eps!r} is invalid: must be finite and >= 0. Use 1e-6.")
    r = rewards.detach().to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
    if r.dim() == 2:
        if group_ids is not None:
            raise LossConfigError(
                f"rewards has shape {tuple(r.shape)} (one row per group) and group_ids was "
                f"also given: ambiguous. Pass 1-D rewards with group_ids, or 2-D without.")
        g = r.shape[1]
        centred = r - r.mean(dim=1, keepdim=True)
        if not scale_by_std:
            return centred
        if g < 2:
            return torch.zeros_like(r)
        return centred / (r.std(dim=1, keepdim=True) + eps)
    if r.dim() != 1 or group_ids is None or tuple(group_ids.shape) != tuple(r.shape):
        raise LossConfigError(
            f"rewards of shape {tuple(r.shape)} with group_ids of shape "
            f"{None if group_ids is None else tuple(group_ids.shape)}: 1-D rewards need "
            f"group_ids of the same shape. Pass group_ids, or reshape rewards to "
            f"[num_groups, G].")
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    n_groups = counts.numel()
    sums = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, inverse, r)
    mean = sums / counts.to(r.dtype)
    centred = r - mean[inverse]
    if not scale_by_std:
        return centred
    sq = torch.zeros_like(sums).index_add_(0, inverse, centred * centred)
    var = sq / (counts.to(r.dtype) - 1).clamp(min=1)
    std = var.sqrt()[inverse]
    single = (counts == 1)[inverse]
    return torch.where(single, torch.zeros_like(r), centred / (std + eps))


def sequence_to_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Broadcast one value per sequence (``[B]``) onto its masked tokens (``[B, T]``), 0 elsewhere."""
    if values.dim() != 1 or mask.dim() != 2 or values.shape[0] != mask.shape[0]:
        raise TensorShapeError(
            f"values {tuple(values.shape)} and mask {tuple(mask.shape)}: expected [B] and "
            f"[B, T]. Pass one value per sequence.")
    return torch.where(mask != 0, values[:, None].to(torch.float32).expand(mask.shape), 0.0)


@torch.no_grad()
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *,
    gamma: float = 1.0, lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the masked tokens of each sequence.

    Each masked token is one step; unmasked positions (env tokens between turns,
    padding) are skipped: the recursion carries across them without discount, and
    their rewards and values are ignored. The last masked token of a sequence is
    terminal (next value 0). For step t with next step t':

        delta_t = r_t + gamma * V_t' - V_t
        A_t     = delta_t + gamma * lam * A_t'
        R_t     = A_t + V_t

    Args:
        rewards: ``[B, T]`` per-token rewards (e.g. the outcome reward on the last
            sampled token, KL shaping elsewhere).
        values: ``[B, T]`` value-head predictions (detached inside).
        mask: ``[B, T]`` loss mask.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, each ``[B, T]`` float32 (float64 for float64 input),
        0 at unmasked positions.
    """
    for name, v in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= v <= 1.0:
            raise LossConfigError(f"{name}={v!r} is invalid: must be in [0, 1]. "
                                  f"Use e.g. gamma=1.0, lam=0.95.")
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    m = mask != 0
    zero = torch.zeros((), dtype=dtype, device=values.device)
    r = torch.where(m, rewards.detach().to(dtype), zero)
    v = torch.where(m, values.detach().to(dtype), zero)
    adv = torch.zeros_like(v)
    next_v = torch.zeros(v.shape[0], dtype=dtype, device=v.device)
    next_a = torch.zeros_like(next_v)
    for t in range(v.shape[1] - 1, -1, -1):
        mt = m[:, t]
        delta = r[:, t] + gamma * next_v - v[:, t]
        a_t = delta + gamma * lam * next_a
        adv[:, t] = torch.where(mt, a_t, zero)
        next_v = torch.where(mt, v[:, t], next_v)
        next_a = torch.where(mt, a_t, next_a)
    returns = torch.where(m, adv + v, zero)
    return adv, returns


# --------------------------------------------------------------------------- per-token terms


def policy_loss_terms(
    logp_new: torch.Tensor, logp_anchor: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, *, clip_low: float, clip_high: float, dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped PPO loss ``-min(rho A, clip(rho, 1-clip_low, 1+clip_high) A)``.

    ``rho = exp(logp_new - logp_anchor)``; the anchor is ``logp_old`` (decoupled) or
    ``logp_rollout`` (bypass). With ``dual_clip = c > 1``, tokens with ``A < 0`` have
    their loss capped at ``-c A`` (Ye et al., 2020). Positions with mask 0 give loss 0
    and gradient 0, whatever values they hold.

    Returns:
        ``(loss [B, T], parts)``; ``parts`` holds bool tensors ``clipped_low``,
        ``clipped_high``, ``dual_clipped`` and the detached ``ratio``.
    """
    m = mask != 0
    zero = torch.zeros((), dtype=logp_new.dtype, device=logp_new.device)
    log_ratio = torch.where(m, logp_new - logp_anchor.detach(), zero)
    a = torch.where(m, advantages.detach().to(logp_new.dtype), zero)
    ratio = log_ratio.exp()
    surr1 = ratio * a
    surr2 = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * a
    loss = -torch.minimum(surr1, surr2)
    clipped = m & (surr2 < surr1)  # strict: the clipped branch is the one in effect
    parts = {
        "ratio": ratio.detach(),
        "clipped_low": clipped & (ratio.detach() < 1.0 - clip_low),
        "clipped_high": clipped & (ratio.detach() > 1.0 + clip_high),
    }
    if dual_clip is not None:
        cap = -dual_clip * a
        dual = m & (a < 0) & (loss > cap)
        loss = torch.where(dual, cap, loss)
        parts["dual_clipped"] = dual
    else:
        parts["dual_clipped"] = torch.zeros_like(m)
    return torch.where(m, loss, zero), parts


def value_loss_terms(
    values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
    *, clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token value loss ``0.5 * max((V - R)^2, (V_clip - R)^2)``, ``V_clip`` within
    ``clip`` of ``values_old``; plain ``0.5 (V - R)^2`` when ``clip`` is None.

    Returns:
        ``(loss [B, T], clipped [B, T] bool)``; 0 / False at mask 0.
    """
    m = mask != 0
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    v = torch.where(m, values, zero)
    v_old = torch.where(m, values_old.detach().to(values.dtype), zero)
    ret = torch.where(m, returns.detach().to(values.dtype), zero)
    err = (v - ret) ** 2
    if clip is None:
        return torch.where(m, 0.5 * err, zero), torch.zeros_like(m)
    v_clip = v_old + (v - v_old).clamp(-clip, clip)
    err_clip = (v_clip - ret) ** 2
    return torch.where(m, 0.5 * torch.maximum(err, err_clip), zero), m & (err_clip > err)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` over the last dim, in float32: ``logsumexp(z) - sum p z``."""
    z = logits.float()
    log_p = torch.log_softmax(z, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def kl_penalty(logp_new: torch.Tensor, logp_ref: torch.Tensor, estimator: KLEstimator = "k3",
               *, max_log_ratio: float = 20.0) -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from tokens sampled by pi_theta.

    With ``x = logp_ref - logp_new`` (clamped to ``+-max_log_ratio``): ``k1 = -x``,
    ``k2 = x^2 / 2``, ``k3 = exp(x) - 1 - x`` (Schulman's estimators; k3 is unbiased
    and never negative). Gradients flow through ``logp_new``.
    """
    if estimator not in _KL_ESTIMATORS:
        raise LossConfigError(f"kl estimator {estimator!r} is invalid: must be one of "
                              f"{_KL_ESTIMATORS}. Use 'k3'.")
    x = (logp_ref.detach().to(logp_new.dtype) - logp_new).clamp(-max_log_ratio, max_log_ratio)
    if estimator == "k1":
        return -x
    if estimator == "k2":
        return 0.5 * x * x
    return torch.expm1(x) - x


# --------------------------------------------------------------------------- aggregation


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is nonzero (0 if there are none)."""
    m = mask != 0
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()
    return total / m.sum().clamp(min=1)


def aggregate_parts(loss: torch.Tensor, mask: torch.Tensor, mode: AggMode = "token-mean", *,
                    norm_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`aggregate` as ``(numerator, denominator)``: the scalar is ``num / max(den, 1)``.

    The denominator is what the mode divides by (tokens, sequences, or sequences x
    ``norm_length``), counted *unclamped* (0 for an all-masked batch), so that the parts
    of several microbatches add up: ``sum(num_i) / sum(den_i)`` is the aggregate of their
    union (with one ``norm_length`` for all of them in ``"seq-mean-token-sum-norm"``).
    Gradient accumulation relies on this.

    Raises:
        LossConfigError: unknown mode or ``norm_length < 1``.
    """
    if mode not in _AGG_MODES:
        raise LossConfigError(f"aggregation mode {mode!r} is invalid: must be one of "
                              f"{_AGG_MODES}. Use 'token-mean'.")
    m = mask != 0
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    masked = torch.where(m, loss, zero)
    tokens_per_seq = m.sum(-1)
    seqs = (tokens_per_seq > 0).sum()
    if mode == "token-mean":
        return masked.sum(), m.sum()
    seq_sum = masked.sum(-1)
    if mode == "seq-mean-token-sum":
        return seq_sum.sum(), seqs
    if mode == "seq-mean-token-mean":
        return (seq_sum / tokens_per_seq.clamp(min=1)).sum(), seqs
    length = loss.shape[-1] if norm_length is None else norm_length
    if length < 1:
        raise LossConfigError(f"norm_length={norm_length!r} is invalid: must be >= 1. "
                              f"Use the maximum generation length.")
    return seq_sum.sum(), seqs * length


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: AggMode = "token-mean", *,
              norm_length: int | None = None) -> torch.Tensor:
    """Reduce a per-token loss ``[B, T]`` to a scalar.

    Modes (only masked tokens count; "sequences" are those with at least one):

    * ``"token-mean"``: sum over all tokens / number of tokens (DAPO). Long sequences
      weigh more.
    * ``"seq-mean-token-sum"``: mean over sequences of each sequence's token sum.
    * ``"seq-mean-token-mean"``: mean over sequences of each sequence's token mean
      (original GRPO). Every sequence weighs the same.
    * ``"seq-mean-token-sum-norm"``: sum over all tokens / (sequences * ``norm_length``),
      ``norm_length`` defaulting to ``T`` (Dr. GRPO: a constant, not the length).

    Raises:
        LossConfigError: unknown mode or ``norm_length < 1``.
    """
    num, den = aggregate_parts(loss, mask, mode, norm_length=norm_length)
    return num / den.clamp(min=1)


# --------------------------------------------------------------------------- the combined loss


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """PPO / GRPO loss settings.

    Attributes:
        clip_low: eps_low, ratio floor ``1 - clip_low``.
        clip_high: eps_high, ratio ceiling ``1 + clip_high`` (DAPO clip-higher: > clip_low).
        dual_clip: c > 1 caps the loss of negative-advantage tokens at ``-c A``; None = off.
        agg_mode: how per-token losses become a scalar (see :func:`aggregate`).
        norm_length: the constant of ``"seq-mean-token-sum-norm"`` (default: ``T``).
        entropy_coef: weight of the entropy bonus (subtracted from the loss).
        kl_coef: weight of the KL-to-reference penalty (needs ``logp_ref``).
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"``.
        value_coef: weight of the value loss (needs values and returns).
        value_clip: clip range of the value prediction around the old one; None = off.
    """

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    agg_mode: AggMode = "token-mean"
    norm_length: int | None = None
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_estimator: KLEstimator = "k3"
    value_coef: float = 0.5
    value_clip: float | None = 0.2

    def __post_init__(self) -> None:
        def bad(field: str, rule: str, fix: str) -> LossConfigError:
            return LossConfigError(
                f"LossConfig.{field}={getattr(self, field)!r} is invalid: {rule}. {fix}")

        if not 0.0 <= self.clip_low < 1.0:
            raise bad("clip_low", "must be in [0, 1)", "Use e.g. clip_low=0.2.")
        if not (math.isfinite(self.clip_high) and self.clip_high >= 0.0):
            raise bad("clip_high", "must be finite and >= 0", "Use e.g. clip_high=0.28.")
        if self.dual_clip is not None and not (math.isfinite(self.dual_clip)
                                               and self.dual_clip > 1.0):
            raise bad("dual_clip", "must be None or a finite number > 1",
                      "Use e.g. dual_clip=3.0, or None.")
        if self.agg_mode not in _AGG_MODES:
            raise bad("agg_mode", f"must be one of {_AGG_MODES}", "Use 'token-mean'.")
        if self.norm_length is not None:
            if self.agg_mode != "seq-mean-token-sum-norm":
                raise bad("norm_length", f"is only used by agg_mode='seq-mean-token-sum-norm'"
                          f" (agg_mode is {self.agg_mode!r})",
                          "Drop norm_length, or set agg_mode='seq-mean-token-sum-norm'.")
            if self.norm_length < 1:
                raise bad("norm_length", "must be >= 1", "Use the max generation length.")
        for field in ("entropy_coef", "kl_coef", "value_coef"):
            v = getattr(self, field)
            if not (math.isfinite(v) and v >= 0.0):
                raise bad(field, "must be finite and >= 0", f"Use e.g. {field}=0.0.")
        if self.kl_estimator not in _KL_ESTIMATORS:
            raise bad("kl_estimator", f"must be one of {_KL_ESTIMATORS}", "Use 'k3'.")
        if self.value_clip is not None and not (math.isfinite(self.value_clip)
                                                and self.value_clip > 0.0):
            raise bad("value_clip", "must be None or finite and > 0",
                      "Use e.g. value_clip=0.2, or None.")


@dataclass(frozen=True)
class LossOutput:
    """What :func:`ppo_loss_with_correction` returns.

    Attributes:
        loss: the scalar to ``backward()``.
        metrics: ``loss/...``, ``ppo/...``, ``value/...`` and ``rollout_corr/...`` floats.
        correction: the rollout-correction result (weights, updated mask), or None.
        loss_sum: the same loss before the aggregation's division: ``loss`` equals
            ``loss_sum / max(denominator, 1)``. Gradient accumulation backpropagates
            ``loss_sum`` of every microbatch and divides the summed gradient by the sum of
            their denominators, which gives the gradient of one pass over their union.
        denominator: the aggregation's (unclamped) denominator, see
            :func:`aggregate_parts`.
    """

    loss: torch.Tensor
    metrics: dict[str, float]
    correction: CorrectionResult | None
    loss_sum: torch.Tensor | None = None
    denominator: float = 1.0


def ppo_loss_with_correction(
    logp_new: torch.Tensor, logp_old: torch.Tensor | None, logp_rollout: torch.Tensor | None,
    advantages: torch.Tensor, mask: torch.Tensor, *, config: LossConfig,
    correction: RolloutCorrectionConfig | None = None, entropy: torch.Tensor | None = None,
    logp_ref: torch.Tensor | None = None, values: torch.Tensor | None = None,
    values_old: torch.Tensor | None = None, returns: torch.Tensor | None = None,
) -> LossOutput:
    """The clipped PPO / GRPO loss with rollout correction, entropy, KL and value terms.

    ``"decoupled"`` correction: ``rho = pi_theta / pi_old`` is clipped and multiplied by
    the detached weight ``w = pi_old / pi_rollout``. ``"bypass"``: ``pi_old := pi_rollout``,
    ``rho = pi_theta / pi_rollout`` (``logp_old`` may be None), and rejections are
    decided on ``logp_new.detach()`` vs ``logp_rollout``. No correction (``None``): plain
    PPO on ``logp_old``. Rejected tokens leave both numerator and denominator.

    For a strictly on-policy step pass ``logp_old = logp_new.detach()``: the ratio is then
    exactly 1 and nothing is clipped.

    Args:
        logp_new: ``[B, T]`` current log-probs of the sampled tokens, with grad.
        logp_old: ``[B, T]`` log-probs before this update (detached inside).
        logp_rollout: ``[B, T]`` the sampler's log-probs (needed with ``correction``).
        advantages: ``[B, T]`` per-token advantages (see :func:`sequence_to_token`).
        mask: ``[B, T]`` loss mask, 0 on env / prompt / padding tokens.
        config: loss settings.
        correction: rollout-correction settings, or None for none.
        entropy: ``[B, T]`` per-token entropy with grad (for ``entropy_coef``).
        logp_ref: ``[B, T]`` reference-policy log-probs (for ``kl_coef``).
        values: ``[B, T]`` value head now (for a PPO value loss; ``values``,
            ``values_old`` and ``returns`` come all three or none).
        values_old: ``[B, T]`` value head at rollout.
        returns: ``[B, T]`` GAE returns.

    Returns:
        A :class:`LossOutput`.

    Raises:
        LossConfigError: an input that a setting needs is missing.
        TensorShapeError: the tensors are not all one ``[B, T]`` shape.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old, logp_rollout=logp_rollout,
                      advantages=advantages, mask=mask, entropy=entropy, logp_ref=logp_ref,
                      values=values, values_old=values_old, returns=returns)
    metrics: dict[str, float] = {}
    result: CorrectionResult | None = None
    loss_mask = mask
    if correction is not None:
        if logp_rollout is None:
            raise LossConfigError("a rollout correction was configured but logp_rollout is "
                                  "None. Pass the sampler's log-probs, or correction=None.")
        if correction.mode == "bypass":
            anchor = logp_rollout
            result = compute_rollout_correction(logp_new.detach(), logp_rollout, mask, correction)
        else:
            if logp_old is None:
                raise LossConfigError("correction mode 'decoupled' needs logp_old, got None. "
                                      "Pass logp_old, or use mode='bypass'.")
            anchor = logp_old
            result = compute_rollout_correction(logp_old, logp_rollout, mask, correction)
        loss_mask = result.mask
        metrics.update(result.metrics)
    else:
        if logp_old is None:
            raise LossConfigError("logp_old is None and no correction was configured. Pass "
                                  "logp_old (logp_new.detach() for an on-policy step).")
        anchor = logp_old

    tok_loss, parts = policy_loss_terms(
        logp_new, anchor, advantages, loss_mask, clip_low=config.clip_low,
        clip_high=config.clip_high, dual_clip=config.dual_clip)
    if result is not None:
        tok_loss = tok_loss * result.weights.to(tok_loss.dtype)
    agg = lambda x: aggregate(x, loss_mask, config.agg_mode,
                              norm_length=config.norm_length)
    num = lambda x: aggregate_parts(x, loss_mask, config.agg_mode,
                                    norm_length=config.norm_length)[0]
    policy = agg(tok_loss)
    total = policy
    total_sum = num(tok_loss)
    denominator = float(aggregate_parts(tok_loss.detach(), loss_mask, config.agg_mode,
                                        norm_length=config.norm_length)[1])
    m = loss_mask != 0
    n = max(int(m.sum()), 1)
    ratio = parts["ratio"][m]
    metrics["loss/policy"] = float(policy.detach())
    metrics["ppo/clip_frac"] = float((parts["clipped_low"] | parts["clipped_high"]).sum()) / n
    metrics["ppo/clip_frac_low"] = float(parts["clipped_low"].sum()) / n
    metrics["ppo/clip_frac_high"] = float(parts["clipped_high"].sum()) / n
    metrics["ppo/dual_clip_frac"] = float(parts["dual_clipped"].sum()) / n
    metrics["ppo/ratio_mean"] = float(ratio.mean()) if ratio.numel() else 1.0
    metrics["ppo/ratio_min"] = float(ratio.min()) if ratio.numel() else 1.0
    metrics["ppo/ratio_max"] = float(ratio.max()) if ratio.numel() else 1.0
    # Exactness diagnostics: 0.0 exactly when every ratio / weight is exactly 1.
    metrics["ppo/ratio_max_abs_dev"] = float((ratio - 1.0).abs().max()) if ratio.numel() \
        else 0.0
    if result is not None:
        kept = result.mask != 0
        w = result.weights.detach()[kept]
        metrics["rollout_corr/is_weight_max_abs_dev"] = float((w - 1.0).abs().max()) \
            if w.numel() else 0.0
        gap_m = mask != 0
        assert correction is not None and logp_rollout is not None
        train_lp = logp_new.detach() if correction.mode == "bypass" else anchor.detach()
        gap = (train_lp.double() - logp_rollout.detach().double())[gap_m]
        metrics["rollout_corr/logp_abs_diff_max"] = float(gap.abs().max()) if gap.numel() \
            else 0.0
    lr = torch.log(parts["ratio"].double())[m]
    metrics["ppo/approx_kl"] = float((torch.expm1(lr) - lr).mean()) if lr.numel() else 0.0
    if config.entropy_coef > 0.0 or entropy is not None:
        if entropy is None:
            raise LossConfigError(f"entropy_coef={config.entropy_coef} needs the per-token "
                                  f"entropy tensor, got None. Pass entropy=..., or set "
                                  f"entropy_coef=0.")
        ent = agg(entropy)
        metrics["loss/entropy"] = float(ent.detach())
        total = total - config.entropy_coef * ent
        total_sum = total_sum - config.entropy_coef * num(entropy)
    if config.kl_coef > 0.0 or logp_ref is not None:
        if logp_ref is None:
            raise LossConfigError(f"kl_coef={config.kl_coef} needs logp_ref, got None. Pass "
                                  f"the reference policy's log-probs, or set kl_coef=0.")
        kl_tok = kl_penalty(logp_new, logp_ref, config.kl_estimator)
        kl = agg(kl_tok)
        metrics["loss/kl"] = float(kl.detach())
        total = total + config.kl_coef * kl
        total_sum = total_sum + config.kl_coef * num(kl_tok)
    given = [x is not None for x in (values, values_old, returns)]
    if any(given):
        if not all(given):
            raise LossConfigError("the value loss needs values, values_old and returns; got "
                                  f"{dict(zip(('values', 'values_old', 'returns'), given))}. "
                                  "Pass all three, or none.")
        assert values is not None and values_old is not None and returns is not None
        v_tok, v_clipped = value_loss_terms(values, values_old, returns, loss_mask,
                                            clip=config.value_clip)
        v_loss = agg(v_tok)
        metrics["loss/value"] = float(v_loss.detach())
        metrics["value/clip_frac"] = float(v_clipped.sum()) / n
        ret = returns.detach().double()[m]
        resid = ret - values.detach().double()[m]
        var = ret.var() if ret.numel() > 1 else torch.zeros((), dtype=torch.float64)
        metrics["value/explained_var"] = float(1.0 - resid.var() / var) if float(var) > 0 \
            else 0.0
        total = total + config.value_coef * v_loss
        total_sum = total_sum + config.value_coef * num(v_tok)
    metrics["loss/total"] = float(total.detach())
    return LossOutput(loss=total, metrics=metrics, correction=result, loss_sum=total_sum,
                      denominator=denominator)
