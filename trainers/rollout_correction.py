"""Rollout correction: importance weights and rejections between trainer and sampler.

The sampler (vLLM) and the trainer compute different log-probs for the same tokens
(attention kernels, MoE numerics, precision). Treating the samples as on-policy then
biases the gradient; the cure is importance sampling between the trainer's policy and
the sampler's, in log space, with truncation or rejection of outliers.

Symbols (per token t of sequence i, only where ``mask`` is 1):

* ``pi_rollout``: the sampler's probability of the sampled token (``logp_rollout``).
* ``pi_old``: the trainer's probability before this update (``logp_old``); in
  ``"bypass"`` mode there is no ``pi_old`` and the trainer's current, detached
  log-probs stand in for it when deciding rejections.
* ``rho_t = pi_old / pi_rollout = exp(logp_old - logp_rollout)``: the token ratio.
* ``rho_i = prod_t rho_t = exp(sum_t log rho_t)``: the sequence ratio.

Estimators (each is one public function below, and one setting of
:class:`RolloutCorrectionConfig`):

================  ==============================================================
token TIS         ``w_t = min(rho_t, C)``                  (``is_level="token"``)
sequence TIS      ``w_t = min(rho_i, C)`` for every t of i (``is_level="sequence"``)
token mask        drop tokens with ``rho_t`` outside ``[low, high]``
(IcePop)                                                   (``reject="token"``)
sequence MIS      drop sequences with ``rho_i`` outside ``[low, high]``
                                                           (``reject="sequence"``)
geometric         drop sequences with ``exp(mean_t log rho_t)`` outside ``[low, high]``
                                                           (``reject="geometric"``)
k3                drop sequences whose mean k3 estimate exceeds ``k3_max``
                                                           (``reject="k3"``)
token veto        drop a sequence if any ``rho_t < veto_threshold``
                                                           (``veto_threshold=...``)
================  ==============================================================

Modes: ``"decoupled"``: the weight ``w = pi_old / pi_rollout`` multiplies the clipped
PPO term on ``pi_theta / pi_old``. ``"bypass"``: ``pi_old := pi_rollout``, so the PPO
ratio itself is anchored on the sampler and already is the importance weight; only
rejections apply (the weights are the kept mask).

Everything is masked: env tokens (mask 0) never enter a sum, a mean, a product, a
numerator or a denominator. Weights are always detached.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from trainers.errors import TrainersError

__all__ = [
    "PRESETS",
    "CorrectionResult",
    "RolloutCorrectionConfig",
    "RolloutCorrectionConfigError",
    "RolloutCorrectionError",
    "TensorShapeError",
    "compute_rollout_correction",
    "correction_diagnostics",
    "geometric_reject_mask",
    "k3_reject_mask",
    "masked_log_ratio",
    "sequence_reject_mask",
    "sequence_tis_weights",
    "token_reject_mask",
    "token_tis_weights",
    "token_veto_mask",
]

Mode = Literal["decoupled", "bypass"]
IsLevel = Literal["none", "token", "sequence"]
RejectLevel = Literal["none", "token", "sequence", "geometric", "k3"]

_MODES = ("decoupled", "bypass")
_IS_LEVELS = ("none", "token", "sequence")
_REJECTS = ("none", "token", "sequence", "geometric", "k3")


class RolloutCorrectionError(TrainersError, ValueError):
    """Base class of the errors this module raises on purpose."""


class RolloutCorrectionConfigError(RolloutCorrectionError):
    """A :class:`RolloutCorrectionConfig` field (or combination) is invalid."""


class TensorShapeError(RolloutCorrectionError):
    """Tensors that must share the shape ``[B, T]`` do not."""


@dataclass(frozen=True, kw_only=True)
class RolloutCorrectionConfig:
    """Which rollout-correction estimator to use, and its bounds.

    Build one directly, or from a named preset with :meth:`preset`.

    Attributes:
        mode: ``"decoupled"`` (weights ``pi_old/pi_rollout`` times the PPO term on
            ``pi_theta/pi_old``) or ``"bypass"`` (``pi_old := pi_rollout``; rejections only).
        is_level: importance weights: ``"none"`` (all 1), ``"token"`` (token TIS) or
            ``"sequence"`` (sequence TIS).
        is_cap: C, the truncation of the importance weights (>= 1).
        reject: rejection rule: ``"none"``, ``"token"`` (IcePop token mask),
            ``"sequence"`` (sequence MIS), ``"geometric"`` (geometric-mean ratio) or
            ``"k3"`` (mean k3 KL per sequence).
        reject_low: lower ratio bound for token/sequence/geometric rejection (0 disables).
        reject_high: upper ratio bound for token/sequence/geometric rejection (inf disables).
        k3_max: threshold on a sequence's mean k3 estimate for ``reject="k3"``.
        veto_threshold: reject a whole sequence if any token ratio is below this;
            ``None`` disables the veto.
        max_log_ratio: log ratios are clamped to ``[-max_log_ratio, max_log_ratio]``
            before any ``exp`` so that nothing overflows.
    """

    mode: Mode = "decoupled"
    is_level: IsLevel = "token"
    is_cap: float = 2.0
    reject: RejectLevel = "none"
    reject_low: float = 0.5
    reject_high: float = 2.0
    k3_max: float = 1e-2
    veto_threshold: float | None = None
    max_log_ratio: float = 20.0

    def __post_init__(self) -> None:
        def bad(field: str, value: object, rule: str, fix: str) -> RolloutCorrectionConfigError:
            return RolloutCorrectionConfigError(
                f"RolloutCorrectionConfig.{field}={value!r} is invalid: {rule}. {fix}"
            )

        if self.mode not in _MODES:
            raise bad("mode", self.mode, f"must be one of {_MODES}", "Pick one of those.")
        if self.is_level not in _IS_LEVELS:
            raise bad("is_level", self.is_level, f"must be one of {_IS_LEVELS}",
                      "Pick one of those.")
        if self.reject not in _REJECTS:
            raise bad("reject", self.reject, f"must be one of {_REJECTS}", "Pick one of those.")
        if not (math.isfinite(self.is_cap) and self.is_cap >= 1.0):
            raise bad("is_cap", self.is_cap, "must be finite and >= 1 (a cap below 1 "
                      "would down-weight even on-policy tokens, whose ratio is 1)",
                      "Use e.g. is_cap=2.0.")
        if not (0.0 <= self.reject_low < 1.0):
            raise bad("reject_low", self.reject_low, "must satisfy 0 <= reject_low < 1 "
                      "(on-policy ratio 1 must be kept)", "Use e.g. reject_low=0.5, or 0 to "
                      "disable the lower bound.")
        if not (self.reject_high > 1.0) or math.isnan(self.reject_high):
            raise bad("reject_high", self.reject_high, "must be > 1 (on-policy ratio 1 must "
                      "be kept)", "Use e.g. reject_high=2.0, or float('inf') to disable it.")
        if not (math.isfinite(self.k3_max) and self.k3_max > 0.0):
            raise bad("k3_max", self.k3_max, "must be finite and > 0",
                      "Use e.g. k3_max=0.01.")
        if self.veto_threshold is not None and not (0.0 < self.veto_threshold < 1.0):
            raise bad("veto_threshold", self.veto_threshold, "must be None or in (0, 1)",
                      "Use e.g. veto_threshold=1e-4, or None to disable the veto.")
        if not (math.isfinite(self.max_log_ratio) and 0.0 < self.max_log_ratio <= 80.0):
            raise bad("max_log_ratio", self.max_log_ratio, "must be in (0, 80] so that "
                      "exp(2 * max_log_ratio) fits in float32", "Use the default 20.0.")
        if self.mode == "bypass" and self.is_level != "none":
            raise bad("is_level", self.is_level, "must be 'none' when mode='bypass': the "
                      "PPO ratio is then anchored on pi_rollout and already is the "
                      "importance weight", "Set is_level='none', or mode='decoupled'.")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> RolloutCorrectionConfig:
        """A config for a named estimator, with optional field overrides.

        Names: see :data:`PRESETS` (``"none"``, ``"token_tis"``, ``"token_mask"``,
        ``"icepop"``, ``"seq_tis"``, ``"seq_mis"``, ``"geo_mask"``, ``"k3_mask"``,
        ``"token_veto"``).

        Raises:
            RolloutCorrectionConfigError: unknown name or invalid override.
        """
        if name not in PRESETS:
            raise RolloutCorrectionConfigError(
                f"unknown rollout-correction preset {name!r}: must be one of "
                f"{sorted(PRESETS)}. Pick one of those, or build RolloutCorrectionConfig "
                f"yourself."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise RolloutCorrectionConfigError(
                f"unknown RolloutCorrectionConfig field(s) {unknown}: must be among "
                f"{sorted(fields)}. Fix the spelling."
            )
        return cls(**{**PRESETS[name], **overrides})  # type: ignore[arg-type]


#: The named estimators as config fields (``RolloutCorrectionConfig.preset(name)``).
#:
#: Bands are set for the mismatch a real run sees. A healthy bf16 engine differs from the
#: trainer by a per-token KL(pi_rollout || pi_train) of ~1e-4..1e-3; a broken kernel (the
#: sink-ignoring attention of early gpt-oss runs, FP8 rollouts) by ~1e-2 and more. Per
#: token, log rho_t then has a spread of ~sqrt(2 KL) (0.05 at 1e-3, 0.14 at 1e-2); a
#: sequence of T tokens has sum_t log rho_t ~ -T KL +- sqrt(2 T KL) and the geometric mean
#: ~ -KL +- sqrt(2 KL / T). A preset must keep nearly all data at those levels (a
#: correction that rejects everything is no correction) and reject most of it when the
#: mismatch is gross (KL ~ 0.1 and up). ``tests/trainers/test_rollout_correction.py``
#: holds each preset to that on a synthetic mismatch; ``benchmarks/rollout_correction.py``
#: shows them in training.
PRESETS: dict[str, dict[str, object]] = {
    "none": {"is_level": "none", "reject": "none"},
    # Token TIS (Yao et al., "Your efficient RL framework secretly brings you off-policy RL
    # training"; verl's rollout_is_threshold default): w_t = min(rho_t, 2). Rejects nothing;
    # |log rho_t| > log 2 = 0.69 is ~5 spreads out even at KL 1e-2, so the cap only bites
    # on outliers.
    "token_tis": {"is_level": "token", "is_cap": 2.0},
    # Token mask: drop tokens with rho_t outside [0.5, 2] (verl's token rejection default:
    # upper 2, lower 1/upper). Same 5-spread argument: <1% dropped at KL 1e-2.
    "token_mask": {"is_level": "none", "reject": "token", "reject_low": 0.5, "reject_high": 2.0},
    # IcePop (Ring-1T; INTELLECT-3 uses the same defaults): the weight is rho_t itself
    # inside [0.5, 5] and 0 outside; the cap of 5 leaves the weight uncut inside the band.
    "icepop": {"is_level": "token", "is_cap": 5.0, "reject": "token",
               "reject_low": 0.5, "reject_high": 5.0},
    # Sequence TIS (verl's default cap 2): w = min(rho_i, 2) for every token of sequence i.
    "seq_tis": {"is_level": "sequence", "is_cap": 2.0},
    # Sequence MIS: the same weights, and drop sequences with rho_i outside [0.1, 2]. The
    # upper bound 2 is the literature's C (Qwen's mismatch analysis, verl's default). The
    # lower bound is 0.1, not verl's 1/2: sum_t log rho_t drifts by -T KL, so [0.5, 2]
    # drops over half the sequences at T=64 and KL 1e-2, or T=512 and KL 1e-3; a sequence
    # below 0.1 already weighs < 0.1, so dropping it changes the gradient little.
    "seq_mis": {"is_level": "sequence", "is_cap": 2.0, "reject": "sequence",
                "reject_low": 0.1, "reject_high": 2.0},
    # Geometric-mean rejection: drop sequences whose per-token geometric ratio is off 1 by
    # more than ~5% (a mean log ratio beyond +-0.05, i.e. a per-token KL of ~5e-2). verl's
    # default +-0.1% assumes thousands of tokens at bf16-noise KL (~1e-4); at T=64 and a
    # KL of 1e-3 it rejects ~80% of sequences (the spread of the mean is 0.006).
    "geo_mask": {"is_level": "none", "reject": "geometric",
                 "reject_low": 0.95, "reject_high": 1.05},
    # k3 rejection: drop sequences whose mean k3 = rho - 1 - log rho (about the sequence's
    # per-token KL) exceeds 0.05, five times the broken-kernel level. verl's default 0.01
    # sits at that level and drops ~20% of sequences at KL 1e-2.
    "k3_mask": {"is_level": "none", "reject": "k3", "k3_max": 5e-2},
    # Token veto (verl's default threshold): drop a sequence if any rho_t < 1e-4, i.e. a
    # token the trainer finds 10^4 times less likely than the sampler did: catastrophic
    # outliers only (log rho < -9.2, ~65 spreads out at KL 1e-2).
    "token_veto": {"is_level": "none", "veto_threshold": 1e-4},
}


@dataclass(frozen=True)
class CorrectionResult:
    """What :func:`compute_rollout_correction` returns.

    Attributes:
        weights: ``[B, T]`` detached importance weights; 0 wherever ``mask`` is 0.
        mask: ``[B, T]`` the input mask with rejected tokens and sequences set to 0
            (same dtype as the input mask). Use it for the loss numerator and denominator.
        metrics: ``rollout_corr/...`` diagnostics as Python floats.
    """

    weights: torch.Tensor
    mask: torch.Tensor
    metrics: dict[str, float]


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise TensorShapeError(
            f"expected tensors of one shape [B, T], got {shapes}. Pad every tensor to the "
            f"same [batch, tokens] layout as the loss mask."
        )


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def masked_log_ratio(
    logp_num: torch.Tensor, logp_den: torch.Tensor, mask: torch.Tensor, *,
    max_log_ratio: float = 20.0,
) -> torch.Tensor:
    """``clamp(logp_num - logp_den)`` where ``mask``, exactly 0 elsewhere; detached.

    Args:
        logp_num: ``[B, T]`` numerator log-probs (``logp_old`` / ``logp_train``).
        logp_den: ``[B, T]`` denominator log-probs (``logp_rollout``).
        mask: ``[B, T]`` loss mask (bool, int or float; nonzero means "counts").
        max_log_ratio: symmetric clamp on the log ratio.

    Returns:
        ``[B, T]`` float32 (or float64) log ratios.
    """
    _check_shapes(logp_num=logp_num, logp_den=logp_den, mask=mask)
    dtype = _work_dtype(logp_num)
    m = mask.detach() != 0
    diff = logp_num.detach().to(dtype) - logp_den.detach().to(dtype)
    # where() before clamp: garbage at env tokens (inf - inf) never reaches the result.
    diff = torch.where(m, diff, torch.zeros((), dtype=dtype, device=diff.device))
    return diff.clamp(-max_log_ratio, max_log_ratio)


def token_tis_weights(log_ratio: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    """Token-level truncated IS: ``min(exp(log_ratio), cap)`` where ``mask``, else 0."""
    m = mask != 0
    return torch.where(m, log_ratio.exp().clamp(max=cap), torch.zeros_like(log_ratio))


def _sequence_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor, max_log_ratio: float
                        ) -> torch.Tensor:
    m = mask != 0
    return torch.where(m, log_ratio, torch.zeros_like(log_ratio)).sum(-1).clamp(
        -max_log_ratio, max_log_ratio)


def sequence_tis_weights(log_ratio: torch.Tensor, mask: torch.Tensor, cap: float, *,
                         max_log_ratio: float = 20.0) -> torch.Tensor:
    """Sequence-level truncated IS: every masked token of sequence i gets ``min(rho_i, cap)``.

    ``rho_i = exp(sum of masked token log ratios)``, the sum clamped to
    ``[-max_log_ratio, max_log_ratio]`` first.
    """
    seq_w = _sequence_log_ratio(log_ratio, mask, max_log_ratio).exp().clamp(max=cap)
    return torch.where(mask != 0, seq_w[:, None].expand_as(log_ratio),
                       torch.zeros_like(log_ratio))


def _outside(log_value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    # Compare in log space: no exp, no overflow; log(0) = -inf disables the lower bound.
    log_low = math.log(low) if low > 0 else -math.inf
    log_high = math.log(high) if math.isfinite(high) else math.inf
    return (log_value < log_low) | (log_value > log_high)


def token_reject_mask(log_ratio: torch.Tensor, mask: torch.Tensor, low: float, high: float
                      ) -> torch.Tensor:
    """Token mask (IcePop): bool ``[B, T]``, True for masked tokens with ratio in ``[low, high]``."""
    m = mask != 0
    return m & ~_outside(log_ratio, low, high)


def _broadcast_keep(seq_keep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (mask != 0) & seq_keep[:, None]


def sequence_reject_mask(log_ratio: torch.Tensor, mask: torch.Tensor, low: float, high: float,
                         ) -> torch.Tensor:
    """Sequence MIS: bool ``[B, T]`` keeping whole sequences whose ``rho_i`` is in ``[low, high]``.

    The comparison uses the unclamped sum of token log ratios, in log space.
    """
    seq_log = torch.where(mask != 0, log_ratio, torch.zeros_like(log_ratio)).sum(-1)
    return _broadcast_keep(~_outside(seq_log, low, high), mask)


def _masked_seq_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask != 0
    total = torch.where(m, x, torch.zeros_like(x)).sum(-1)
    return total / m.sum(-1).clamp(min=1).to(x.dtype)


def geometric_reject_mask(log_ratio: torch.Tensor, mask: torch.Tensor, low: float, high: float,
                          ) -> torch.Tensor:
    """Geometric-mean rejection: keep sequences with ``exp(mean_t log rho_t)`` in ``[low, high]``."""
    return _broadcast_keep(~_outside(_masked_seq_mean(log_ratio, mask), low, high), mask)


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # k3 = rho - 1 - log rho >= 0, an unbiased estimate of KL(rollout || train) under rollout.
    return torch.expm1(log_ratio) - log_ratio


def k3_reject_mask(log_ratio: torch.Tensor, mask: torch.Tensor, k3_max: float) -> torch.Tensor:
    """k3 rejection: keep sequences whose mean masked ``rho - 1 - log rho`` is <= ``k3_max``."""
    return _broadcast_keep(_masked_seq_mean(_k3(log_ratio), mask) <= k3_max, mask)


def token_veto_mask(log_ratio: torch.Tensor, mask: torch.Tensor, threshold: float
                    ) -> torch.Tensor:
    """Token veto: drop a whole sequence if any masked token has ``rho_t < threshold``."""
    m = mask != 0
    vetoed = (m & (log_ratio < math.log(threshold))).any(-1)
    return _broadcast_keep(~vetoed, mask)


def correction_diagnostics(
    logp_train: torch.Tensor, logp_rollout: torch.Tensor, mask: torch.Tensor,
    weights: torch.Tensor, kept: torch.Tensor, *, reject_low: float = 0.5,
    reject_high: float = 2.0, max_log_ratio: float = 20.0,
) -> dict[str, float]:
    """The ``rollout_corr/...`` metrics (Python floats) for one batch.

    Directions: ``kl`` is the masked mean of ``logp_rollout - logp_train``, an estimate
    of KL(pi_rollout || pi_train) from the sampler's tokens; ``k3_kl`` estimates the same
    KL with ``rho - 1 - log rho`` (never negative). ``chi2_token`` is
    ``mean(rho_t^2) - 1`` and ``chi2_seq`` is ``mean(rho_i^2) - 1`` over sequences with
    at least one masked token. ``ess`` is ``(sum w)^2 / (n * sum w^2)`` over the kept
    tokens (1 means uniform weights; 0 when nothing is kept). ``ratio_*`` and
    ``frac_above``/``frac_below`` (``rho_t`` above ``reject_high`` / below ``reject_low``)
    use the raw token ratios. ``rejected_*_frac`` count what ``kept`` removed from
    ``mask``; a sequence counts as rejected when none of its tokens is kept.
    ``abs_prob_diff_*`` is ``|p_train - p_rollout|`` per token.
    """
    m = mask != 0
    k = kept != 0
    n = int(m.sum())
    names = ("kl", "k3_kl", "chi2_token", "chi2_seq", "ess", "ratio_min", "ratio_mean",
             "ratio_max", "frac_above", "frac_below", "rejected_token_frac",
             "rejected_seq_frac", "abs_prob_diff_mean", "abs_prob_diff_max", "weight_mean")
    if n == 0:
        return {f"rollout_corr/{name}": 0.0 for name in names}
    lr = masked_log_ratio(logp_train, logp_rollout, mask, max_log_ratio=max_log_ratio)
    dtype = lr.dtype
    rho = lr.exp()
    sel_lr, sel_rho = lr[m], rho[m]
    seq_valid = m.any(-1)
    seq_rho = _sequence_log_ratio(lr, mask, max_log_ratio)[seq_valid].exp()
    p_diff = (logp_train.detach().to(dtype)[m].exp() - logp_rollout.detach().to(dtype)[m].exp()
              ).abs()
    w = weights.detach().to(dtype)[k]
    n_kept = int(k.sum())
    ess = float(w.sum() ** 2 / (n_kept * (w * w).sum())) if n_kept and bool(
        (w != 0).any()) else 0.0
    log_low = math.log(reject_low) if reject_low > 0 else -math.inf
    log_high = math.log(reject_high) if math.isfinite(reject_high) else math.inf
    out = {
        "kl": float((-sel_lr).mean()),
        "k3_kl": float(_k3(sel_lr).mean()),
        "chi2_token": float((sel_rho * sel_rho).mean() - 1.0),
        "chi2_seq": float((seq_rho * seq_rho).mean() - 1.0),
        "ess": ess,
        "ratio_min": float(sel_rho.min()),
        "ratio_mean": float(sel_rho.mean()),
        "ratio_max": float(sel_rho.max()),
        "frac_above": float((sel_lr > log_high).to(dtype).mean()),
        "frac_below": float((sel_lr < log_low).to(dtype).mean()),
        "rejected_token_frac": float((m & ~k).sum()) / n,
        "rejected_seq_frac": float((seq_valid & ~(k & m).any(-1)).sum()) / int(seq_valid.sum()),
        "abs_prob_diff_mean": float(p_diff.mean()),
        "abs_prob_diff_max": float(p_diff.max()),
        "weight_mean": float(w.mean()) if n_kept else 0.0,
    }
    return {f"rollout_corr/{name}": out[name] for name in names}


def compute_rollout_correction(
    logp_train: torch.Tensor, logp_rollout: torch.Tensor, mask: torch.Tensor,
    config: RolloutCorrectionConfig,
) -> CorrectionResult:
    """Importance weights, rejections and diagnostics for one batch.

    Args:
        logp_train: ``[B, T]`` the trainer's log-probs of the sampled tokens: ``logp_old``
            in ``"decoupled"`` mode, the current (detached inside) log-probs in ``"bypass"``.
        logp_rollout: ``[B, T]`` the sampler's log-probs of the same tokens.
        mask: ``[B, T]`` loss mask; env tokens are 0.
        config: which estimator, its bounds and the mode.

    Returns:
        A :class:`CorrectionResult`; ``weights`` and ``mask`` are detached, and the weights
        are 0 wherever the returned mask is 0.

    Raises:
        TensorShapeError: the three tensors are not all ``[B, T]`` of one shape.
    """
    _check_shapes(logp_train=logp_train, logp_rollout=logp_rollout, mask=mask)
    with torch.no_grad():
        lr = masked_log_ratio(logp_train, logp_rollout, mask, max_log_ratio=config.max_log_ratio)
        m = mask.detach() != 0
        keep = m
        if config.reject == "token":
            keep = keep & token_reject_mask(lr, m, config.reject_low, config.reject_high)
        elif config.reject == "sequence":
            # Sequence MIS uses the unclamped sum, so recompute without the token clamp.
            raw = masked_log_ratio(logp_train, logp_rollout, mask, max_log_ratio=math.inf)
            keep = keep & sequence_reject_mask(raw, m, config.reject_low, config.reject_high)
        elif config.reject == "geometric":
            keep = keep & geometric_reject_mask(lr, m, config.reject_low, config.reject_high)
        elif config.reject == "k3":
            keep = keep & k3_reject_mask(lr, m, config.k3_max)
        if config.veto_threshold is not None:
            keep = keep & token_veto_mask(lr, m, config.veto_threshold)

        if config.is_level == "token":
            weights = token_tis_weights(lr, m, config.is_cap)
        elif config.is_level == "sequence":
            weights = sequence_tis_weights(lr, m, config.is_cap,
                                           max_log_ratio=config.max_log_ratio)
        else:
            weights = m.to(lr.dtype)
        weights = torch.where(keep, weights, torch.zeros_like(weights))
        metrics = correction_diagnostics(
            logp_train, logp_rollout, mask, weights, keep, reject_low=config.reject_low,
            reject_high=config.reject_high, max_log_ratio=config.max_log_ratio)
        new_mask = keep.to(mask.dtype) if mask.dtype != torch.bool else keep
    return CorrectionResult(weights=weights, mask=new_mask, metrics=metrics)
