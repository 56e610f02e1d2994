"""The mismatch of ``benchmarks/rollout_correction.py``: a sampler that ignores gpt-oss's
attention sinks, sharing one tiny model with a trainer that honours them.

* :func:`attention_ignoring_sinks`: gpt-oss attention without its sinks (the bug the early
  gpt-oss RL runs had in their inference kernel), registered with transformers under
  :data:`SINKLESS` by :func:`register_sinkless_attention`; :func:`attention_as` switches a
  model to it for a block.
* :class:`SubsetSampler`: samples from the shared model over the env's allowed tokens (the
  sinkless attention when asked), with the sampler's log-probs.
* :class:`AllowedRowsHead`: the LM head cut to the allowed tokens' rows, the only ones the
  trainer and the sampler ever read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from agent_envs.rollout.policy import Policy, Sample, SampleRequest
from trainers.policies.hf import _cache_of

__all__ = [
    "SINKLESS", "AllowedRowsHead", "SubsetSampler", "attention_as", "attention_ignoring_sinks",
    "register_sinkless_attention",
]

SINKLESS = "benchmark_ignore_sinks"


def attention_ignoring_sinks(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """gpt-oss attention WITHOUT its sinks: plain softmax attention (the bug to reproduce)."""
    n_rep = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(n_rep, dim=1)
    value = value.repeat_interleave(n_rep, dim=1)
    q_len, k_len = query.shape[2], key.shape[2]
    mask = None if attention_mask is None else attention_mask[:, :, :, :k_len].to(query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling,
                                         is_causal=mask is None and q_len == k_len and q_len > 1)
    return out.transpose(1, 2).contiguous(), None


def register_sinkless_attention() -> None:
    """Register :func:`attention_ignoring_sinks` with transformers (benchmark only)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(SINKLESS, attention_ignoring_sinks)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SINKLESS, eager_mask)


@contextlib.contextmanager
def attention_as(model: torch.nn.Module, implementation: str) -> Iterator[None]:
    """Run ``model`` with another attention implementation inside the block."""
    cfg = model.config
    saved = cfg._attn_implementation
    cfg._attn_implementation = implementation
    try:
        yield
    finally:
        cfg._attn_implementation = saved


class _AllowedRows:
    """Stands in for the LM head's weight: ``weight[ids]`` gives the rows of allowed ids."""

    def __init__(self, head: AllowedRowsHead) -> None:
        self.head = head

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.head.lut[ids.to(self.head.lut.device)]
        if bool((rows < 0).any()):
            raise IndexError("AllowedRowsHead holds only the allowed tokens' rows")
        return self.head.rows_weight[rows]


class AllowedRowsHead(torch.nn.Module):
    """An LM head that keeps (and trains) only the rows of the allowed token ids.

    The trainer and :class:`SubsetSampler` only ever read ``head.weight[allowed_ids]``
    (the softmax runs over the allowed tokens), so the other rows never get a gradient;
    dropping them changes no log-prob and no update (``tests/trainers/
    test_rollout_correction_bench.py`` checks both) and saves a dense 201088-row gradient
    and an Adam step over 12.9M parameters per update.
    """

    def __init__(self, head: torch.nn.Linear, allowed: Sequence[int]) -> None:
        super().__init__()
        if getattr(head, "bias", None) is not None:
            raise ValueError("AllowedRowsHead expects an LM head without bias (gpt-oss has none)")
        ids = torch.as_tensor(sorted({int(t) for t in allowed}), dtype=torch.long)
        lut = torch.full((head.weight.shape[0],), -1, dtype=torch.long)
        lut[ids] = torch.arange(len(ids))
        self.register_buffer("lut", lut, persistent=False)
        self.rows_weight = torch.nn.Parameter(head.weight.detach()[ids].clone())
        self.bias = None

    @property
    def weight(self) -> Any:  # type: ignore[override]
        return _AllowedRows(self)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("AllowedRowsHead has no full-vocabulary forward: read "
                           "head.weight[allowed_ids] (as the trainer and SubsetSampler do)")


class SubsetSampler(Policy):
    """Samples from the shared model over ``allowed`` token ids, with the sampler's log-probs.

    Equivalent to ``TransformersPolicy(AllowedTokensModel(model, allowed))`` at
    temperature 1 (the softmax runs over the allowed rows of the LM head only), but it
    computes just those rows: on CPU the 201088-row head dominates sampling time.

    Args:
        model: the trainer's gpt-oss (shared, not copied).
        allowed: the token ids to sample from (the env's ``allowed_token_ids()``).
        sinkless: ignore the attention sinks while sampling (the mismatch).
        bf16: sample under bfloat16 autocast (a lower-precision engine).
        seed: the sampling RNG's seed.
    """

    def __init__(self, model: torch.nn.Module, allowed: Sequence[int], *, sinkless: bool,
                 bf16: bool = False, seed: int = 0) -> None:
        self.model = model
        self.allowed = torch.as_tensor(sorted(set(allowed)), dtype=torch.long)
        self.sinkless = sinkless
        self.bf16 = bf16
        self.policy_id = "tiny-gpt-oss" + ("+sinkless" if sinkless else "") + \
            ("+bf16" if bf16 else "")
        self.version = "0"
        self._gen = torch.Generator().manual_seed(seed)

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """One completion per request (temperature 1; stop tokens end a completion)."""
        requests = list(requests)
        if not requests:
            return []
        impl = SINKLESS if self.sinkless else self.model.config._attn_implementation
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 \
            else contextlib.nullcontext()
        with torch.inference_mode(), attention_as(self.model, impl), amp:
            return self._sample(requests)

    def _sample(self, reqs: list[SampleRequest]) -> list[Sample]:
        base = self.model.model
        head = self.model.get_output_embeddings().weight[self.allowed]
        b, width = len(reqs), max(len(r.prompt) for r in reqs)
        ids = torch.full((b, width), 199999, dtype=torch.long)
        attn = torch.zeros((b, width), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt):] = torch.as_tensor(list(r.prompt))
            attn[i, width - len(r.prompt):] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        out = base(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        tokens: list[list[int]] = [[] for _ in reqs]
        lps: list[list[float]] = [[] for _ in reqs]
        done = [False] * b
        reasons = ["length"] * b
        for _ in range(max(r.max_tokens for r in reqs)):
            logits = out.last_hidden_state[:, -1].float() @ head.float().T
            logp = torch.log_softmax(logits, dim=-1)
            pick = torch.multinomial(logp.exp(), 1, generator=self._gen)[:, 0]
            nxt = self.allowed[pick]
            for i, r in enumerate(reqs):
                if done[i]:
                    continue
                tok = int(nxt[i])
                tokens[i].append(tok)
                lps[i].append(float(logp[i, pick[i]]))
                if tok in r.stop_token_ids:
                    done[i], reasons[i] = True, "stop"
                elif len(tokens[i]) >= r.max_tokens:
                    done[i] = True
            if all(done):
                break
            attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype)], dim=1)
            pos = pos[:, -1:] + 1
            out = base(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos,
                       use_cache=True, **_cache_of(out))
        return [Sample(token_ids=t, logprobs=lp, finish_reason=why)  # type: ignore[arg-type]
                for t, lp, why in zip(tokens, lps, reasons)]
