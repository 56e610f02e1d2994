"""A policy that samples from a Hugging Face ``transformers`` causal LM (CPU or GPU).

It runs its own batched sampling loop (left-padded prompts, KV cache) so that
the log-prob it records for each token is exactly the one it sampled from:
the processed distribution (temperature, then top-k, then top-p, renormalised),
as vLLM's ``logprobs_mode="processed_logprobs"`` reports it. ``torch`` and
``transformers`` are imported when this module is imported, never by
``import trainers.policies``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from agent_envs.rollout.errors import PolicyConfigError
from agent_envs.rollout.policy import Policy, Sample, SampleRequest

__all__ = ["TransformersPolicy", "check_model_source", "processed_logprobs"]


def check_model_source(name_or_path: str) -> None:
    """Fail at once, with what to do, when ``from_pretrained(name_or_path)`` cannot work here:
    a path that is not a directory, or a hub id while the Hugging Face Hub cannot be reached
    (transformers would retry for about a minute, then raise an ``OSError``).

    Raises:
        PolicyConfigError: the message names the model and the fix.
    """
    import os

    from agent_envs.tasks.hf import hub_problem

    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        return
    looks_like_path = name_or_path.startswith(("/", "./", "../", "~")) or os.sep * 2 in path \
        or name_or_path.count("/") > 1 or os.path.exists(path)
    if looks_like_path:
        raise PolicyConfigError(
            f"model {name_or_path!r} is not a directory here; give a local checkpoint "
            f"directory (with config.json and the weights) or a hub id such as "
            f"'openai/gpt-oss-20b'")
    problem = hub_problem()
    if problem is not None:
        raise PolicyConfigError(
            f"model {name_or_path!r} is not a local directory, and the Hugging Face Hub cannot "
            f"be reached to download it ({problem}); give a local checkpoint directory, or set "
            f"HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache")


def processed_logprobs(
    logits: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = -1,
    top_p: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Log-probs of the distribution a sampler draws from, for a batch of logit rows.

    Order (vLLM's): divide by temperature, keep the top-k, keep the top-p
    nucleus of what is left, renormalise. Masked tokens get ``-inf``.

    Args:
        logits: ``[B, V]`` logits (any float dtype; computed in float32).
        temperature: A float or a ``[B]`` tensor, > 0.
        top_k: An int or a ``[B]`` tensor; values <= 0 disable it.
        top_p: A float or a ``[B]`` tensor in (0, 1]; 1 disables it.

    Returns:
        ``[B, V]`` float32 log-probs that sum (in prob space) to 1 per row.
    """
    x = logits.float()
    b, v = x.shape
    dev = x.device
    temp = torch.as_tensor(temperature, dtype=torch.float32, device=dev).reshape(-1, 1)
    x = x / temp
    k = torch.as_tensor(top_k, dtype=torch.long, device=dev).reshape(-1).expand(b)
    p = torch.as_tensor(top_p, dtype=torch.float32, device=dev).reshape(-1).expand(b)
    if bool((k > 0).any()) or bool((p < 1.0).any()):
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        rank = torch.arange(v, device=dev).expand(b, v)
        k_eff = torch.where(k > 0, k.clamp(max=v), torch.full_like(k, v))
        drop = rank >= k_eff.unsqueeze(1)
        sorted_x = sorted_x.masked_fill(drop, float("-inf"))
        probs = torch.softmax(sorted_x, dim=-1)
        # Keep a token while the mass of the tokens ranked above it is < top_p:
        # the smallest prefix whose mass reaches top_p (the top token is always kept).
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop = drop | (mass_before >= p.unsqueeze(1))
        drop[:, 0] = False
        sorted_x = sorted_x.masked_fill(drop, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(1, order, sorted_x)
    return torch.log_softmax(x, dim=-1)


def _cache_of(out: Any) -> dict[str, Any]:
    """The KV cache of a forward's output, keyed by the name the model takes it back under.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and goes
    in 5.40); older releases and custom models use the old name. The output says which: it
    carries the cache under the name the model's ``forward`` accepts.
    """
    for name in ("cache", "past_key_values"):
        if name in out:
            return {name: out[name]}
    raise TypeError(f"the model's output has no KV cache (keys: {sorted(out.keys())}); "
                    "TransformersPolicy needs a causal LM that returns one with use_cache=True")


class TransformersPolicy(Policy):
    """Samples from a ``transformers`` causal LM with processed log-probs.

    Args:
        model: A causal LM (``AutoModelForCausalLM`` or any model taking
            ``input_ids``, ``attention_mask``, ``position_ids`` and a KV cache
            (``cache``, or ``past_key_values`` before transformers 5.24) and
            returning ``.logits``).
        policy_id: Name recorded in episodes (default: the model's
            ``config.name_or_path`` or its class name).
        version: Weights version recorded in episodes.
        pad_token_id: Token used for left padding (masked out, never sampled from).
        max_batch_size: Requests are sampled in chunks of at most this many.
        seed: Seed of the RNG used for requests whose ``params.seed`` is None.
        score_fn: If given, the recorded log-probs are re-scored after sampling:
            ``score_fn(ids [1, T]) -> logp [1, T]`` on prompt + completion (one sequence,
            no padding), and the completion's entries replace the KV-cached ones. Give it
            the trainer's own log-prob function (``Trainer.score_tokens``) and the sampler
            reports exactly what the trainer computes for an unpadded sequence. It must
            score the distribution that is sampled (so no top-k / top-p). The largest
            ``|kv-cached - re-scored|`` of the last call is kept in
            ``last_rescore_max_abs_diff``.

    Example:
        >>> policy = TransformersPolicy.from_pretrained("openai/gpt-oss-20b", device="cuda")
        >>> [s] = policy.sample([SampleRequest(prompt=obs, max_tokens=512)])
    """

    def __init__(
        self,
        model: Any,
        *,
        policy_id: str | None = None,
        version: str = "0",
        pad_token_id: int = 0,
        max_batch_size: int = 16,
        seed: int = 0,
        score_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise PolicyConfigError(
                f"TransformersPolicy max_batch_size must be >= 1, got {max_batch_size!r}."
            )
        self.model = model.eval()
        cfg = getattr(model, "config", None)
        self.policy_id = policy_id or (getattr(cfg, "name_or_path", "") or type(model).__name__)
        self.version = str(version)
        self.pad_token_id = int(pad_token_id)
        self.max_batch_size = int(max_batch_size)
        self._rng = torch.Generator(device="cpu").manual_seed(int(seed))
        self._lock = threading.Lock()
        self.score_fn = score_fn
        self.last_rescore_max_abs_diff = 0.0

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        **kwargs: Any,
    ) -> TransformersPolicy:
        """Load ``AutoModelForCausalLM.from_pretrained(name_or_path)`` and wrap it.

        Args:
            name_or_path: A hub id or a local directory.
            device: ``"cpu"``, ``"cuda"``, ... (default: cuda if available).
            dtype: Torch dtype name or ``"auto"``.
            **kwargs: Passed to ``TransformersPolicy``.

        Raises:
            PolicyConfigError: no such directory, the Hub unreachable for a hub id, a model
                that cannot be loaded, or a CUDA device that is not there.
        """
        from transformers import AutoModelForCausalLM

        check_model_source(name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise PolicyConfigError(f"device={device!r}, but no CUDA device is available here "
                                    f"(torch.cuda.is_available() is False); use device='cpu'")
        try:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
        except (OSError, ValueError) as e:  # "not found", "not a checkpoint", "unrecognized"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicyConfigError(f"cannot load model {name_or_path!r}: {first}") from e
        model = model.to(device)
        kwargs.setdefault("policy_id", name_or_path)
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample one completion per request (see ``Policy.sample``)."""
        requests = list(requests)
        out: list[Sample] = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(requests), self.max_batch_size):
                out.extend(self._sample_batch(requests[i : i + self.max_batch_size]))
            if self.score_fn is not None:
                out = self._rescore(requests, out)
        return out

    def _rescore(self, requests: list[SampleRequest], samples: list[Sample]) -> list[Sample]:
        """Replace each sample's log-probs by ``score_fn`` of its prompt + completion."""
        assert self.score_fn is not None
        worst = 0.0
        rescored = []
        for r, s in zip(requests, samples):
            if r.params.top_k > 0 or r.params.top_p < 1.0:
                raise PolicyConfigError(
                    f"TransformersPolicy score_fn re-scores the full distribution, but the "
                    f"request samples with top_k={r.params.top_k}, top_p={r.params.top_p}. "
                    f"Use top_k=-1 and top_p=1.0, or no score_fn.")
            if not s.token_ids:
                rescored.append(s)
                continue
            ids = torch.as_tensor([list(r.prompt) + list(s.token_ids)], dtype=torch.long,
                                  device=self.device)
            lp = self.score_fn(ids)[0, len(r.prompt):].float().cpu()
            worst = max(worst, float((lp - torch.tensor(s.logprobs)).abs().max()))
            rescored.append(Sample(token_ids=s.token_ids, logprobs=lp.tolist(),
                                   finish_reason=s.finish_reason))
        self.last_rescore_max_abs_diff = worst
        return rescored

    def _forward(self, **kw: Any) -> Any:
        try:
            return self.model(**kw, logits_to_keep=1)
        except TypeError:  # models without logits_to_keep
            return self.model(**kw)

    def _sample_batch(self, reqs: list[SampleRequest]) -> list[Sample]:
        dev = self.device
        b = len(reqs)
        width = max(len(r.prompt) for r in reqs)
        ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((b, width), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt) :] = torch.as_tensor(list(r.prompt), dtype=torch.long)
            attn[i, width - len(r.prompt) :] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        temps = torch.tensor([r.params.temperature for r in reqs], device=dev)
        top_ks = torch.tensor([r.params.top_k for r in reqs], device=dev)
        top_ps = torch.tensor([r.params.top_p for r in reqs], device=dev)
        gens = [
            self._rng if r.params.seed is None
            else torch.Generator(device="cpu").manual_seed(int(r.params.seed))
            for r in reqs
        ]
        tokens: list[list[int]] = [[] for _ in reqs]
        lps: list[list[float]] = [[] for _ in reqs]
        reasons: list[str | None] = [None] * b
        # An AllowedTokensModel's other columns are -inf: sample on its allowed columns only
        # (the same distribution, without touching the whole vocabulary per token).
        allowed = getattr(self.model, "allowed_token_ids", None)
        allowed_ids = allowed.tolist() if allowed is not None else None  # no device sync per token
        out = self._forward(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        for _ in range(max(r.max_tokens for r in reqs)):
            logits = out.logits[:, -1, :]
            if allowed is not None:
                logits = logits[:, allowed.to(logits.device)]
            logp = processed_logprobs(logits, temperature=temps, top_k=top_ks, top_p=top_ps).cpu()
            nxt = torch.full((b, 1), self.pad_token_id, dtype=torch.long)
            for i, r in enumerate(reqs):
                if reasons[i] is not None:
                    continue
                col = int(torch.multinomial(logp[i].exp(), 1, generator=gens[i]))
                tok = allowed_ids[col] if allowed_ids is not None else col
                tokens[i].append(tok)
                lps[i].append(float(logp[i, col]))
                nxt[i, 0] = tok
                if tok in r.stop_token_ids:
                    reasons[i] = "stop"
                elif len(tokens[i]) >= r.max_tokens:
                    reasons[i] = "length"
            if all(x is not None for x in reasons):
                break
            attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype, device=dev)], dim=1)
            pos = pos[:, -1:] + 1
            out = self._forward(
                input_ids=nxt.to(dev), attention_mask=attn, position_ids=pos,
                use_cache=True, **_cache_of(out),
            )
        return [
            Sample(token_ids=t, logprobs=lp, finish_reason=reason or "length")  # type: ignore[arg-type]
            for t, lp, reason in zip(tokens, lps, reasons)
        ]

    def close(self) -> None:
        """Drop nothing: the model belongs to the caller."""
