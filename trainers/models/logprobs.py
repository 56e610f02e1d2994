"""Per-token log-probs without materialising ``[tokens x vocab]`` logits.

gpt-oss has a 201088-token vocabulary: the logits of a 32k-token sequence in float32
take 26 GB. :func:`chunked_logprobs` runs the decoder once, then applies the LM head
and ``log_softmax`` to ``chunk_size`` positions at a time; in training each chunk is
checkpointed, so backward recomputes its logits instead of keeping them.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["ChunkedLogprobs", "chunked_logprobs", "logprobs_from_hidden"]


class ChunkedLogprobs(tuple):  # type: ignore[type-arg]
    """``(logprobs [B, T], entropy [B, T] or None)`` returned by :func:`chunked_logprobs`."""

    __slots__ = ()

    @property
    def logprobs(self) -> torch.Tensor:
        return self[0]

    @property
    def entropy(self) -> torch.Tensor | None:
        return self[1]


def _chunk_stats(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                 temperature: float, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_z = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[..., None]).squeeze(-1) - log_z
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        ent = log_z - (probs * logits).sum(-1)
    else:
        ent = torch.zeros_like(logp)
    return logp, ent


def logprobs_from_hidden(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, *,
    chunk_size: int = 1024, temperature: float = 1.0, with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of ``targets`` under ``head(hidden)``, chunk by chunk.

    Args:
        head: the LM head (hidden -> vocab logits).
        hidden: ``[B, N, H]`` hidden states, the state before each target.
        targets: ``[B, N]`` token ids.
        chunk_size: positions per head call (over the flattened ``B * N``).
        temperature: divide the logits by this first (match the sampler's).
        with_entropy: also return the entropy of each position's distribution.

    Returns:
        ``(logprobs [B, N] float32, entropy [B, N] float32 or None)``.
    """
    b, n, h = hidden.shape
    flat_h = hidden.reshape(b * n, h)
    flat_t = targets.reshape(b * n)
    logps, ents = [], []
    use_ckpt = torch.is_grad_enabled() and (flat_h.requires_grad or any(
        p.requires_grad for p in head.parameters()))
    for start in range(0, b * n, chunk_size):
        args = (head, flat_h[start:start + chunk_size], flat_t[start:start + chunk_size],
                temperature, with_entropy)
        if use_ckpt:
            lp, ent = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            lp, ent = _chunk_stats(*args)
        logps.append(lp)
        ents.append(ent)
    logp = torch.cat(logps).reshape(b, n) if logps else flat_h.new_zeros(b, n, dtype=torch.float32)
    ent_out = torch.cat(ents).reshape(b, n) if (with_entropy and ents) else None
    return logp, ent_out


def chunked_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
    *, chunk_size: int = 1024, temperature: float = 1.0, with_entropy: bool = False,
) -> ChunkedLogprobs:
    """``log p(input_ids[:, t] | input_ids[:, :t])`` for every t, never all logits at once.

    Position 0 has no context and gets log-prob 0 (and entropy 0); it is a prompt token,
    which the loss mask excludes anyway. The output lines up with ``input_ids`` and
    with the env's loss mask and the sampler's per-token log-probs.

    Args:
        model: a causal LM with ``.model`` (decoder) and an output embedding (the LM
            head); a peft-wrapped model works too.
        input_ids: ``[B, T]`` token ids.
        attention_mask: ``[B, T]`` 1 for real tokens (right padding), or None.
        chunk_size: positions per LM-head call; peak logits memory is
            ``chunk_size x vocab``.
        temperature: the sampler's temperature (log-probs of the processed distribution).
        with_entropy: also compute per-token entropies (for an entropy bonus / metric).

    Returns:
        :class:`ChunkedLogprobs` ``(logprobs [B, T], entropy [B, T] or None)``, float32.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} is invalid: must be >= 1. Use e.g. 1024.")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is invalid: must be > 0. Use the "
                         f"sampler's temperature, e.g. 1.0.")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.model
    head = base.get_output_embeddings()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                     use_cache=False).last_hidden_state
    logp, ent = logprobs_from_hidden(head, hidden[:, :-1], input_ids[:, 1:],
                                     chunk_size=chunk_size, temperature=temperature,
                                     with_entropy=with_entropy)
    pad = logp.new_zeros(logp.shape[0], 1)
    logp = torch.cat([pad, logp], dim=1)
    if ent is not None:
        ent = torch.cat([pad, ent], dim=1)
    return ChunkedLogprobs((logp, ent))
