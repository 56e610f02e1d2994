"""Attention implementations for gpt-oss that honour its attention sinks, and a guard.

gpt-oss adds a learned per-head "sink" logit to every softmax row of attention
(``softmax([scores, sink])`` with the sink column dropped afterwards). A kernel that
ignores it computes a different model: the trainer's log-probs then disagree with
the sampler's (vLLM honours sinks), which is what broke early gpt-oss RL runs. So
:func:`check_attn_implementation` refuses every implementation not known to honour
sinks, instead of letting transformers drop them silently (its FA2 path does).

Sink-aware implementations:

* ``"eager"``: transformers' reference; materialises ``[B, H, T, T]`` scores.
* ``"fused_sinks"`` (this module): ``scaled_dot_product_attention`` with the sink folded
  in as one extra key whose value is zero and whose score is the sink logit (through
  the additive mask). Fused kernels on CPU and GPU, forward and backward; the additive
  mask is ``[B, H, T, T+1]``, so memory still grows with ``T^2``. (Its name must not
  contain "sdpa": transformers refuses any such name for gpt-oss.)
* ``"flex_attention"``: transformers' flex path renormalises the output with the
  log-sum-exp: ``out * sigmoid(lse - sink)``. CUDA only (PyTorch has no flex backward
  on CPU, and transformers refuses sinks there); block-sparse, no ``T^2`` mask.
* ``"kernels-community/vllm-flash-attn3"``: FlashAttention-3 build with ``s_aux`` sinks
  (Hopper GPUs, the ``kernels`` package).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from trainers.errors import TrainersError

__all__ = [
    "SINK_AWARE_IMPLEMENTATIONS", "SinkUnsupportedError", "check_attn_implementation",
    "register_sink_attention", "sdpa_with_sinks",
]

#: Attention implementations known to honour gpt-oss attention sinks.
SINK_AWARE_IMPLEMENTATIONS: tuple[str, ...] = (
    "eager", "fused_sinks", "flex_attention", "kernels-community/vllm-flash-attn3",
)

_WHY_NOT = {
    "sdpa": "torch's scaled_dot_product_attention has no sink term",
    "flash_attention_2": "FlashAttention-2 has no sink term and transformers drops it silently",
    "flash_attention_3": "the FlashAttention-3 package has no sink term; only the "
                         "kernels-community/vllm-flash-attn3 build does",
    "flash_attention_4": "not verified to receive the sinks for gpt-oss",
}


class SinkUnsupportedError(TrainersError, ValueError):
    """An attention implementation that ignores gpt-oss attention sinks was requested."""


def check_attn_implementation(name: str, *, device: str | torch.device = "cpu") -> str:
    """Return ``name`` if it honours attention sinks on ``device``; raise otherwise.

    Args:
        name: a transformers ``attn_implementation`` string.
        device: where the model will run (``"flex_attention"`` needs CUDA).

    Raises:
        SinkUnsupportedError: ``name`` ignores sinks (or is unknown to honour them), or
            needs a device that ``device`` is not.
    """
    device_type = torch.device(device).type
    if name not in SINK_AWARE_IMPLEMENTATIONS:
        why = _WHY_NOT.get(name, "it is not known to honour attention sinks")
        raise SinkUnsupportedError(
            f"attn_implementation={name!r} would ignore gpt-oss attention sinks ({why}), so "
            f"the trainer's log-probs would disagree with the sampler's. Use one of "
            f"{list(SINK_AWARE_IMPLEMENTATIONS)}: 'eager' or 'fused_sinks' anywhere, "
            f"'flex_attention' on CUDA.")
    if name == "flex_attention" and device_type != "cuda":
        raise SinkUnsupportedError(
            f"attn_implementation='flex_attention' honours sinks only on CUDA (device is "
            f"{device_type!r}: PyTorch has no flex-attention backward there). Use 'fused_sinks' "
            f"or 'eager' on {device_type}.")
    if name.startswith("kernels-community/") and device_type != "cuda":
        raise SinkUnsupportedError(
            f"attn_implementation={name!r} is a CUDA kernel (device is {device_type!r}). Use "
            f"'fused_sinks' or 'eager' on {device_type}.")
    return name


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def sdpa_with_sinks(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
    s_aux: torch.Tensor | None = None, **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: SDPA with sinks as one extra zero-value key.

    ``softmax([q.k * scale + mask, sink])`` over ``K + 1`` columns, times
    ``[v, 0]``, equals gpt-oss's eager attention (the sink column carries no value).

    Args:
        module: the attention module (for ``num_key_value_groups`` and ``sinks``).
        query: ``[B, H, Q, D]``; key, value: ``[B, H_kv, K, D]``.
        attention_mask: additive float mask ``[B, 1, Q, >=K]`` (transformers' eager mask,
            which also carries the sliding window), or None for bottom-right causal.
        scaling: softmax scale.
        dropout: attention dropout probability.
        s_aux: ``[H]`` sink logits (falls back to ``module.sinks``).

    Returns:
        ``(output [B, Q, H, D], None)``.
    """
    sinks = s_aux if s_aux is not None else getattr(module, "sinks", None)
    b, h, q_len, d = query.shape
    n_rep = h // key.shape[1]
    k_len = key.shape[2]
    key = _repeat_kv(key, n_rep)
    value = _repeat_kv(value, n_rep)
    if attention_mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(
            k_len - q_len)
        mask = torch.zeros(q_len, k_len, dtype=query.dtype, device=query.device)
        mask = mask.masked_fill(~allowed, torch.finfo(query.dtype).min)[None, None]
    else:
        mask = attention_mask[:, :, :, :k_len].to(query.dtype)
    mask = mask.expand(b, h, q_len, k_len)
    if sinks is not None:
        sink_col = sinks.to(query.dtype).view(1, h, 1, 1).expand(b, h, q_len, 1)
        mask = torch.cat([mask, sink_col], dim=-1)
        zeros = torch.zeros(b, h, 1, d, dtype=key.dtype, device=key.device)
        key = torch.cat([key, zeros], dim=2)
        value = torch.cat([value, zeros], dim=2)
    # On CPU a mask that requires grad (trainable sinks) sends SDPA to its math kernel,
    # a mask that does not to a fused one: the no-grad scoring of a sequence would then
    # differ in the last bits from the training forward. Pin the kernel to what training
    # uses, whatever the grad mode, so both compute the same floats.
    pin = (sinks is not None and sinks.requires_grad and query.device.type == "cpu")
    with sdpa_kernel([SDPBackend.MATH]) if pin else nullcontext():
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def register_sink_attention() -> None:
    """Register ``"fused_sinks"`` with transformers (idempotent).

    The attention function is :func:`sdpa_with_sinks`; the mask builder is
    transformers' eager (additive, sliding-window aware) mask.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register("fused_sinks", sdpa_with_sinks)
    ALL_MASK_ATTENTION_FUNCTIONS.register("fused_sinks", eager_mask)
