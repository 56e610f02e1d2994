"""The training loop: collect episodes, then GRPO or PPO updates with rollout correction.

One step (:meth:`Trainer.step`):

1. **Collect**: ``tasks_per_step`` groups of G episodes (same task and env seed inside
   a group) through :class:`~agent_envs.rollout.RolloutCollector`. The sampler is the
   trainer's *own model object* (``TransformersPolicy``; weight sync is then free), a
   vLLM engine, or llama.cpp's ``llama-server`` (``LlamaCppPolicy``: a GGUF rewritten and
   the server restarted), which :meth:`Trainer.sync_weights` refreshes after every update.
2. **Samples**: one per segment (:func:`~trainers.episode.segment_samples`);
   episodes flagged ``infra_error`` are dropped, never learned from as reward 0.
3. **Advantages**: GRPO: ``(r - mean_group) / std_group`` per episode, broadcast to
   its sampled tokens. PPO: a value head on the last hidden state and GAE over the
   sampled tokens (the reward sits on the last one).
4. **Update**: ``epochs x minibatches`` AdamW steps on
   :func:`~trainers.losses.ppo_loss_with_correction`. ``pi_old`` of a minibatch is the
   policy when that minibatch is first seen (decoupled PPO's proximal policy):
   ``logp_old = logp_new.detach()`` of its first forward pass, no second pass. In the
   first epoch every PPO ratio is therefore exactly 1 (``ppo/ratio_max_abs_dev == 0.0``)
   and nothing is clipped; only later epochs move it. The sampler/trainer mismatch
   ``pi_old / pi_rollout`` is handled by the rollout correction (``[correction]``).
5. **Gradient accumulation** (``algo.microbatches = k``): each minibatch runs as k
   forward/backward chunks before its optimizer step. Each chunk backpropagates its
   un-normalised loss sum and the summed gradient is divided by the minibatch's
   denominator (tokens, or sequences, see :func:`~trainers.losses.aggregate_parts`), so
   k chunks give the gradient of one pass up to float summation order. All chunks see
   the weights of before the step: ``pi_old`` is the same policy for all of them. (PPO's
   advantage whitening is per chunk.)

Exactness (``tests/trainers/test_onpolicy_exact.py``): the transformers sampler's
KV-cached log-probs differ from a full forward by float noise (~1e-6 on CPU, float32),
and a sequence's log-probs change in the last bits when it is right-padded to a longer
one (the attention rows get longer). ``Trainer(..., exact_sampler_logprobs=True)``
makes the sampler re-score each completion with :meth:`Trainer.score_tokens` (the
trainer's own function: one full forward of prompt + completion, no padding); with
microbatches of one sample (no padding on the trainer side either) and single-turn
samples, ``pi_old / pi_rollout`` is then exactly 1 at every token of the first
minibatch (``rollout_corr/is_weight_max_abs_dev == 0.0``).

Token restriction (``rollout.allowed_tokens = "env"``): the sampler's logits are
masked to ``env.allowed_token_ids()`` (so its processed log-probs are a distribution
over that set) and the trainer computes log-probs with an LM head cut to the same rows.
Both sides therefore score the same distribution; without the second half every
correction weight would be huge.

Metrics (namespaced, one dict per step, to console, ``metrics.jsonl`` and TensorBoard):
``reward/*`` (mean, std, solved fraction), ``episode/*`` (turns, sampled tokens,
truncated fraction, infra-dropped count), ``loss/*`` (policy, value, entropy, kl,
total), ``ppo/*`` (clip fractions, ratio min/mean/max, ``ratio_max_abs_dev`` = max
``|pi_theta / pi_old - 1|``, approx KL), ``value/*``,
``rollout_corr/*`` (see :func:`~trainers.rollout_correction.correction_diagnostics`;
also ``is_weight_max_abs_dev`` = max ``|w - 1|`` of the kept correction weights and
``logp_abs_diff_max`` = max ``|logp_old - logp_rollout|``),
``grad/norm`` (mean pre-clip global norm) and ``grad/norm_max``, ``perf/*`` (seconds
per phase, ``tokens_per_s`` = all tokens of the step / step seconds).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agent_envs.harmony import ENDOFTEXT
from agent_envs.rollout import RolloutCollector, RolloutConfig, derive_seed
from agent_envs.rollout.episode import Episode
from agent_envs.rollout.policy import Policy, SamplingParams
from trainers.config import ConfigError, TrainConfig, config_to_dict
from trainers.episode import TrainSample, collate, segment_samples
from trainers.losses import (
    LossConfig,
    LossOutput,
    gae,
    grpo_advantages,
    ppo_loss_with_correction,
)
from trainers.models.logprobs import logprobs_from_hidden

__all__ = [
    "AllowedTokensModel",
    "TrainResult",
    "Trainer",
    "build_model",
    "check_device",
    "enable_checkpointing",
    "token_logprobs",
    "train",
]

_PAD_ID = ENDOFTEXT  # gpt-oss <|endoftext|>; padding is masked out everywhere


# --------------------------------------------------------------------------- model pieces


def build_model(config: TrainConfig, base: torch.nn.Module | None = None) -> torch.nn.Module:
    """The policy model the config asks for: a tiny random gpt-oss or a checkpoint,
    with the configured attention, dtype, device, gradient checkpointing and LoRA.

    ``base``: a gpt-oss model built elsewhere (e.g. a random one with gpt-oss-20b's real
    config, ``benchmarks/gpt_oss_20b_gpu.py``) to prepare exactly like a tiny one instead
    of building or loading ``config.model.name``.
    """
    from trainers.models import (
        GptOssLoadConfig,
        LoraSettings,
        apply_lora,
        build_tiny_gpt_oss,
        load_gpt_oss,
        register_sink_attention,
        tiny_gpt_oss_config,
    )

    m = config.model
    check_device(m.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}[m.dtype]
    if m.name == "tiny" or base is not None:
        if base is not None:
            model = base
        else:
            cfg = tiny_gpt_oss_config(num_hidden_layers=m.tiny_layers,
                                      hidden_size=m.tiny_hidden_size,
                                      num_local_experts=m.tiny_experts)
            model = build_tiny_gpt_oss(cfg, seed=m.init_seed, sink_scale=m.tiny_sink_scale)
        if m.attn_implementation != "eager":
            register_sink_attention()
            model.config._attn_implementation = m.attn_implementation
        model = model.to(device=m.device, dtype=dtype)
        if m.gradient_checkpointing:
            enable_checkpointing(model)
    else:
        from agent_envs.rollout.errors import PolicyConfigError
        from trainers.policies.hf import check_model_source

        try:
            check_model_source(m.name)
            model = load_gpt_oss(m.name, GptOssLoadConfig(
                attn_implementation=m.attn_implementation, dtype=m.dtype, device=m.device,
                gradient_checkpointing=m.gradient_checkpointing))
        except PolicyConfigError as e:
            raise ConfigError(f"model.name: {e}. Or use model.name='tiny' (a random tiny "
                              f"gpt-oss built in code).") from e
        except (OSError, ValueError) as e:  # transformers' "not found / not a checkpoint"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"model.name={m.name!r}: cannot load it as a gpt-oss "
                              f"checkpoint: {first}") from e
    model.config.use_cache = False
    if m.freeze_input_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if m.lora:
        model = apply_lora(model, LoraSettings(
            r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout,
            attention_modules=m.lora_attention_modules,
            expert_parameters=m.lora_expert_parameters))
    return model.train()


def check_device(device: str) -> None:
    """Refuse a CUDA device on a machine without one (torch would fail later with a bare
    ``AssertionError: Torch not compiled with CUDA enabled``).

    Raises:
        ConfigError: ``model.device`` names CUDA and no CUDA device is available.
    """
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device={device!r}, but no CUDA device is available here "
                          f"(torch.cuda.is_available() is False). Use model.device='cpu' "
                          f"(with model.dtype='float32'), or run on a machine with a GPU.")


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer in backward (non-reentrant), under either name
    transformers gives the switch (``activation_checkpointing_enable`` from 5.x)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})


class AllowedTokensModel(torch.nn.Module):
    """Wraps a causal LM so that its logits are ``-inf`` outside ``allowed_token_ids``.

    Give it to ``TransformersPolicy``: the sampler then draws only allowed tokens and
    reports log-probs of the distribution renormalised over them. It holds the same
    model object (no copy), so the trainer's updates are seen at once.
    """

    def __init__(self, model: torch.nn.Module, allowed_token_ids: Sequence[int]) -> None:
        super().__init__()
        self.inner = model
        self.register_buffer("allowed", torch.as_tensor(sorted(set(allowed_token_ids)),
                                                        dtype=torch.long), persistent=False)

    @property
    def config(self) -> Any:
        return self.inner.config

    @property
    def allowed_token_ids(self) -> torch.Tensor:
        """The sorted vocabulary ids it keeps (TransformersPolicy samples over these only)."""
        return self.allowed

    def forward(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        logits = out.logits
        allowed = self.allowed.to(logits.device)
        masked = torch.full_like(logits, float("-inf"))
        masked[..., allowed] = logits[..., allowed]
        out.logits = masked
        return out


class _SubsetHead(torch.nn.Module):
    """The LM head restricted to some vocabulary rows (gradients reach those rows)."""

    def __init__(self, head: torch.nn.Module, rows: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.rows = rows

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.head.weight[self.rows]
        bias = getattr(self.head, "bias", None)
        return F.linear(hidden, weight, None if bias is None else bias[self.rows])


def token_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
    allowed_token_ids: torch.Tensor | None = None, temperature: float = 1.0,
    chunk_size: int = 1024, with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per-token log-probs (and entropies, and hidden states) in chunks.

    Like :func:`trainers.models.chunked_logprobs`, and with ``allowed_token_ids`` the
    softmax runs over those vocabulary rows only, which is exactly what an
    :class:`AllowedTokensModel` sampler draws from. Targets outside the set (prompt and
    env tokens, which the loss mask excludes) get an arbitrary value.

    Returns:
        ``(logprobs [B, T], entropy [B, T] or None, hidden [B, T, H])``; position 0 has
        log-prob and entropy 0.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(input_ids=input_ids, attention_mask=attention_mask,
                        use_cache=False).last_hidden_state
    head = base.get_output_embeddings()
    targets = input_ids[:, 1:]
    if allowed_token_ids is not None:
        rows = allowed_token_ids.to(input_ids.device)
        lut = torch.zeros(int(base.config.vocab_size), dtype=torch.long, device=rows.device)
        lut[rows] = torch.arange(rows.numel(), device=rows.device)
        head = _SubsetHead(head, rows)
        targets = lut[targets]
    logp, ent = logprobs_from_hidden(head, hidden[:, :-1], targets, chunk_size=chunk_size,
                                     temperature=temperature, with_entropy=with_entropy)
    pad = logp.new_zeros(logp.shape[0], 1)
    logp = torch.cat([pad, logp], dim=1)
    if ent is not None:
        ent = torch.cat([pad, ent], dim=1)
    return logp, ent, hidden


# --------------------------------------------------------------------------- the trainer


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one metrics dict per step run in this process (after a resume, the
            earlier steps' rows are read back from ``metrics.jsonl`` first).
        out_dir: the run directory.
        step: the last completed step.
        checkpoint: the newest checkpoint file, or None.
        plot: the PNG written at the end, or None.
    """

    history: list[dict[str, float]]
    out_dir: Path
    step: int
    checkpoint: Path | None = None
    plot: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """GRPO / PPO with rollout correction on a harmony env (see the module docstring).

    Args:
        config: the run's config.
        model: use this model instead of building one from ``config.model``.
        policy: use this sampler instead of building one (it must sample from ``model``'s
            current weights, or be refreshed by ``sync_weights``).
        env_factory: build envs with this instead of ``agent_envs.make`` (local only).
        exact_sampler_logprobs: the built transformers sampler records, for each sampled
            token, the log-prob :meth:`score_tokens` gives (a full forward of prompt +
            completion, the trainer's own code) instead of its KV-cached one. Costs one
            extra forward per completion; with ``rollout.top_p = 1`` only (the trainer
            scores the temperature-scaled distribution, not a nucleus).
    """

    def __init__(self, config: TrainConfig, *, model: torch.nn.Module | None = None,
                 policy: Policy | None = None,
                 env_factory: Callable[[], Any] | None = None,
                 exact_sampler_logprobs: bool = False) -> None:
        self.config = config
        if exact_sampler_logprobs and (config.rollout.sampler != "transformers"
                                       or config.rollout.top_p != 1.0):
            raise ConfigError(
                f"exact_sampler_logprobs=True needs rollout.sampler='transformers' and "
                f"rollout.top_p=1.0 (got {config.rollout.sampler!r}, {config.rollout.top_p}): "
                f"the trainer's scoring function is the temperature-scaled softmax of the "
                f"trainer's own model. Drop exact_sampler_logprobs, or change those.")
        self.exact_sampler_logprobs = exact_sampler_logprobs
        c = config
        torch.manual_seed(c.seed)
        random.seed(c.seed)
        np.random.seed(c.seed % (2**32))
        check_device(c.model.device)
        self.device = torch.device(c.model.device)
        self.model = model if model is not None else build_model(c)
        self.env_factory = env_factory
        self.allowed = self._allowed_tokens()
        hidden = int(self._base().config.hidden_size)
        self.value_head: torch.nn.Linear | None = None
        if c.algo.name == "ppo":
            gen = torch.Generator().manual_seed(derive_seed(c.seed, "value_head"))
            self.value_head = torch.nn.Linear(hidden, 1)
            with torch.no_grad():
                self.value_head.weight.copy_(torch.randn(1, hidden, generator=gen) * 0.01)
                self.value_head.bias.zero_()
            self.value_head.to(self.device)
        self.ref_model = self._make_ref() if c.algo.kl_coef > 0 else None
        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad],
                   "lr": c.algo.lr}]
        if self.value_head is not None:
            groups.append({"params": list(self.value_head.parameters()),
                           "lr": c.algo.value_lr or c.algo.lr})
        self.optimizer = torch.optim.AdamW(groups, lr=c.algo.lr, weight_decay=c.algo.weight_decay)
        self.loss_config = LossConfig(
            clip_low=c.algo.clip_low, clip_high=c.algo.clip_high, agg_mode=c.algo.agg_mode,
            entropy_coef=c.algo.entropy_coef, kl_coef=c.algo.kl_coef,
            value_coef=c.algo.value_coef, value_clip=c.algo.value_clip)
        self.policy = policy if policy is not None else self._make_policy()
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.last_update_log: list[dict[str, Any]] = []
        self.last_update_tensors: dict[str, torch.Tensor] = {}
        self._writer: Any = None
        self.out_dir = c.out_dir

    # -- set-up -----------------------------------------------------------------

    def _base(self) -> Any:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") \
            else self.model

    def _allowed_tokens(self) -> torch.Tensor | None:
        if self.config.rollout.allowed_tokens != "env":
            return None
        env = self._make_env()
        try:
            fn = getattr(env, "allowed_token_ids", None)
            if fn is None:
                raise ConfigError(
                    f"rollout.allowed_tokens='env' but env {self.config.env.id!r} has no "
                    f"allowed_token_ids() (only toy envs restrict their tokens). Set "
                    f"rollout.allowed_tokens='all'.")
            ids = sorted({int(t) for t in fn()})
        finally:
            env.close()
        return torch.as_tensor(ids, dtype=torch.long, device=self.device)

    def _make_env(self) -> Any:
        if self.env_factory is not None:
            return self.env_factory()
        import agent_envs

        if self.config.env.url:  # envs on an `agent-envs serve` server
            return agent_envs.remote(self.config.env.url, self.config.env.id,
                                     **dict(self.config.env.kwargs))
        return agent_envs.make(self.config.env.id, **dict(self.config.env.kwargs))

    def _make_ref(self) -> torch.nn.Module | None:
        if hasattr(self.model, "disable_adapter"):
            return None  # LoRA: the reference is the base model with adapters disabled
        ref = copy.deepcopy(self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    def _make_policy(self) -> Policy:
        c = self.config
        if c.rollout.sampler == "llamacpp":  # llama-server on a GGUF; sync_weights rewrites it
            from trainers.policies.llamacpp import LlamaCppPolicy

            return LlamaCppPolicy.for_model(
                self.model, work_dir=c.out_dir / "llamacpp",
                policy_id=f"{c.model.name}@llamacpp", allowed_token_ids=None
                if self.allowed is None else self.allowed.tolist(),
                **dict(c.rollout.llamacpp_kwargs))
        if c.rollout.sampler == "vllm":
            from trainers.policies.vllm import VLLMPolicy

            kwargs = {"dtype": c.model.dtype, **dict(c.rollout.vllm_kwargs)}
            return VLLMPolicy(c.model.name, **kwargs)
        from trainers.policies.hf import TransformersPolicy

        sampler_model: torch.nn.Module = self.model
        if self.allowed is not None:
            sampler_model = AllowedTokensModel(self.model, self.allowed.tolist())
        return TransformersPolicy(sampler_model, policy_id=f"{c.model.name}@train",
                                  pad_token_id=_PAD_ID, max_batch_size=c.rollout.max_batch_size,
                                  seed=c.seed,
                                  score_fn=self.score_tokens if self.exact_sampler_logprobs
                                  else None)

    def score_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The trainer's log-probs ``[B, T]`` of ``input_ids`` ``[B, T]`` (no padding).

        The same function, chunking, token restriction and temperature as the update's
        forward pass, without gradients. Position 0 gets 0.
        """
        ids = input_ids.to(self.device)
        with torch.no_grad():
            logp, _, _ = token_logprobs(
                self.model, ids, torch.ones_like(ids), allowed_token_ids=self.allowed,
                temperature=self.config.rollout.temperature,
                chunk_size=self.config.model.logprob_chunk_size)
        return logp

    def sync_weights(self) -> None:
        """Make the sampler use the trainer's current weights, and bump its version.

        The transformers sampler holds the trainer's model object: nothing to copy. A
        vLLM sampler gets the weights pushed in (LoRA adapters merged first).
        """
        version = str(self.step_count)
        load = getattr(self.policy, "load_weights", None)
        if load is None:
            self.policy.version = version
            return
        model = self.model
        if hasattr(model, "merge_adapter"):
            model.merge_adapter()
            try:
                weights = [(n.replace("base_model.model.", "", 1).replace(".base_layer", ""),
                            p.detach()) for n, p in model.named_parameters() if "lora_" not in n]
                load(weights, version=version)
            finally:
                model.unmerge_adapter()
        else:
            load([(n, p.detach()) for n, p in model.named_parameters()], version=version)

    # -- one step -----------------------------------------------------------------

    def collect(self, step: int) -> list[Episode]:
        """Run ``tasks_per_step x group_size`` episodes with the current policy."""
        r = self.config.rollout
        cfg = RolloutConfig(
            env_id=self.config.env.id, env_kwargs=dict(self.config.env.kwargs),
            num_groups=r.tasks_per_step, group_size=r.group_size, concurrency=r.concurrency,
            max_batch_size=r.max_batch_size, max_tokens=r.max_new_tokens,
            sampling=SamplingParams(temperature=r.temperature, top_p=r.top_p),
            episode_timeout_s=r.episode_timeout_s,
            seed=derive_seed(self.config.seed, "rollout", step), progress=False,
            env_url=None if self.env_factory is not None else self.config.env.url)
        self.model.eval()
        return RolloutCollector(self.policy, cfg, env_factory=self.env_factory).collect()

    def _advantages(self, episodes: Sequence[Episode], samples: Sequence[TrainSample]
                    ) -> torch.Tensor:
        """GRPO: one advantage per sample, from its episode's group."""
        kept = [e for e in episodes if not e.infra]
        rewards = torch.tensor([e.reward for e in kept], dtype=torch.float32)
        groups = torch.tensor([e.group_id for e in kept], dtype=torch.long)
        adv = grpo_advantages(rewards, groups, scale_by_std=self.config.algo.scale_by_std)
        by_id = {e.episode_id: float(a) for e, a in zip(kept, adv)}
        return torch.tensor([by_id[s.episode_id] for s in samples], dtype=torch.float32)

    def update(self, episodes: Sequence[Episode], step: int) -> dict[str, float]:
        """The optimizer steps of one training step on ``episodes``; returns the metrics."""
        c = self.config
        samples = segment_samples(episodes, drop_infra=True)
        metrics: dict[str, float] = {}
        if not samples:
            metrics["train/skipped"] = 1.0
            return metrics
        batch = collate(samples, pad_id=_PAD_ID)
        dev = self.device
        ids = torch.as_tensor(batch["input_ids"], device=dev)
        attn = torch.as_tensor(batch["attention_mask"], device=dev).long()
        mask = torch.as_tensor(batch["loss_mask"], device=dev).float()
        logp_rollout_all = torch.as_tensor(batch["sampler_logprobs"], device=dev).float()
        rewards = torch.as_tensor(batch["rewards"], device=dev).float()
        n, width = ids.shape
        seq_adv = self._advantages(episodes, samples).to(dev) if c.algo.name == "grpo" else None
        if self.allowed is not None:
            outside = (mask != 0) & ~torch.isin(ids, self.allowed)
            if bool(outside.any()):
                raise RuntimeError("a sampled token lies outside allowed_token_ids: the sampler "
                                   "was not restricted like the trainer")
        store: dict[str, torch.Tensor] = {}
        sums: dict[str, list[float]] = {}
        grad_norms: list[float] = []
        log: list[dict[str, Any]] = []
        self.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for epoch in range(c.algo.epochs):
            gen = torch.Generator().manual_seed(derive_seed(c.seed, "perm", step, epoch))
            order = torch.randperm(n, generator=gen) if c.algo.minibatches > 1 \
                else torch.arange(n)
            for mb_index, mb in enumerate(order.chunk(c.algo.minibatches)):
                mb = mb.to(dev)
                # One loss normalisation for the whole minibatch (Dr. GRPO's constant is
                # its width), whichever microbatch a sample lands in.
                loss_config = self.loss_config
                if loss_config.agg_mode == "seq-mean-token-sum-norm" \
                        and loss_config.norm_length is None:
                    loss_config = dataclasses.replace(
                        loss_config, norm_length=int(attn[mb].sum(-1).max()))
                micro = mb.chunk(c.algo.microbatches)
                self.optimizer.zero_grad(set_to_none=True)
                denominator = 0.0
                for part in micro:
                    out = self._forward_backward(
                        part, epoch, store, shape=(n, width), ids=ids, attn=attn, mask=mask,
                        logp_rollout_all=logp_rollout_all, rewards=rewards, seq_adv=seq_adv,
                        loss_config=loss_config, accumulate=len(micro) > 1)
                    denominator += out.denominator
                    log.append({"epoch": epoch, "minibatch": mb_index,
                                "samples": part.tolist(), "metrics": dict(out.metrics)})
                    for k, v in out.metrics.items():
                        sums.setdefault(k, []).append(float(v))
                if len(micro) > 1:
                    # sum_i grad(loss_sum_i) / sum_i den_i: one pass's gradient.
                    for p in params:
                        if p.grad is not None:
                            p.grad.div_(max(denominator, 1.0))
                gn = float(torch.nn.utils.clip_grad_norm_(params, c.algo.max_grad_norm))
                self.optimizer.step()
                grad_norms.append(gn)
        for k, vs in sums.items():
            if k.endswith(("_max", "_max_abs_dev")):
                metrics[k] = max(vs)
            elif k.endswith("_min"):
                metrics[k] = min(vs)
            else:
                metrics[k] = float(np.mean(vs))
        metrics["grad/norm"] = float(np.mean(grad_norms))
        metrics["grad/norm_max"] = float(np.max(grad_norms))
        metrics["train/samples"] = float(n)
        metrics["train/optimizer_steps"] = float(len(grad_norms))
        metrics["train/microbatches"] = float(len(log))
        # For inspection (tests, debugging): per-microbatch metrics, and the step's
        # pi_old / pi_rollout log-probs in the collated [samples, width] layout.
        self.last_update_log = log
        self.last_update_tensors = {"logp_old": store["logp_old"],
                                    "logp_rollout": logp_rollout_all, "loss_mask": mask,
                                    "input_ids": ids}
        return metrics

    def _forward_backward(self, part: torch.Tensor, epoch: int, store: dict[str, torch.Tensor],
                          *, shape: tuple[int, int], ids: torch.Tensor, attn: torch.Tensor,
                          mask: torch.Tensor, logp_rollout_all: torch.Tensor,
                          rewards: torch.Tensor, seq_adv: torch.Tensor | None,
                          loss_config: LossConfig, accumulate: bool) -> LossOutput:
        """Forward one microbatch (samples ``part``), compute its loss and backpropagate.

        With ``accumulate`` the un-normalised ``loss_sum`` is backpropagated (the caller
        divides the summed gradient by the minibatch's denominator); otherwise ``loss``.
        """
        c = self.config
        t = int(attn[part].sum(-1).max())
        m_ids, m_attn, m_mask = ids[part, :t], attn[part, :t], mask[part, :t]
        logp_new, ent, hidden = token_logprobs(
            self.model, m_ids, m_attn, allowed_token_ids=self.allowed,
            temperature=c.rollout.temperature, chunk_size=c.model.logprob_chunk_size,
            with_entropy=c.algo.entropy_coef > 0)
        values = None
        if self.value_head is not None:
            v = self.value_head(hidden[:, :-1].float()).squeeze(-1)
            values = torch.cat([v.new_zeros(v.shape[0], 1), v], dim=1)
        if epoch == 0:
            # pi_old := the policy as these samples are first seen (no 2nd pass). Every
            # microbatch of a minibatch is seen before its optimizer step, so all of them
            # see the same weights.
            self._first_visit(store, part, shape, logp_new, values, m_ids, m_attn, m_mask,
                              rewards[part], seq_adv)
        extra: dict[str, Any] = {}
        if values is not None:
            extra = {"values": values, "values_old": store["values_old"][part, :t],
                     "returns": store["returns"][part, :t]}
        if "logp_ref" in store:
            extra["logp_ref"] = store["logp_ref"][part, :t]
        out = ppo_loss_with_correction(
            logp_new, store["logp_old"][part, :t], logp_rollout_all[part, :t],
            store["adv"][part, :t], m_mask, config=loss_config, correction=c.correction,
            entropy=ent if c.algo.entropy_coef > 0 else None, **extra)
        if accumulate:
            assert out.loss_sum is not None
            out.loss_sum.backward()
        else:
            out.loss.backward()
        return out

    def _first_visit(self, store: dict[str, torch.Tensor], mb: torch.Tensor,
                     shape: tuple[int, int],
                     logp_new: torch.Tensor, values: torch.Tensor | None, m_ids: torch.Tensor,
                     m_attn: torch.Tensor, m_mask: torch.Tensor, rewards: torch.Tensor,
                     seq_adv: torch.Tensor | None) -> None:
        t = logp_new.shape[1]

        def put(name: str, value: torch.Tensor) -> None:
            if name not in store:
                store[name] = torch.zeros(shape, dtype=value.dtype, device=value.device)
            store[name][mb, :t] = value.detach()

        put("logp_old", logp_new)
        if seq_adv is not None:
            tok = torch.where(m_mask != 0, seq_adv[mb][:, None].expand_as(m_mask), 0.0)
            put("adv", tok)
        else:
            assert values is not None
            a = self.config.algo
            pos = torch.arange(t, device=m_mask.device).expand_as(m_mask)
            last = torch.where(m_mask != 0, pos, -1).max(dim=1).values
            tok_r = torch.zeros_like(m_mask)
            has = last >= 0
            tok_r[has, last[has]] = rewards[has]
            adv, ret = gae(tok_r, values.detach(), m_mask, gamma=a.gamma, lam=a.lam)
            if a.normalize_advantages:
                sel = adv[m_mask != 0]
                if sel.numel() > 1:
                    adv = torch.where(m_mask != 0, (adv - sel.mean()) / (sel.std() + 1e-8), 0.0)
            put("adv", adv.float())
            put("values_old", values)
            put("returns", ret.float())
        if self.config.algo.kl_coef > 0:
            with torch.no_grad():
                if self.ref_model is not None:
                    ref, _, _ = token_logprobs(
                        self.ref_model, m_ids, m_attn, allowed_token_ids=self.allowed,
                        temperature=self.config.rollout.temperature,
                        chunk_size=self.config.model.logprob_chunk_size)
                else:
                    with self.model.disable_adapter():
                        ref, _, _ = token_logprobs(
                            self.model, m_ids, m_attn, allowed_token_ids=self.allowed,
                            temperature=self.config.rollout.temperature,
                            chunk_size=self.config.model.logprob_chunk_size)
            put("logp_ref", ref)

    def step(self) -> dict[str, float]:
        """One training step (collect, update, sync); returns its metrics."""
        step = self.step_count + 1
        t0 = time.perf_counter()
        episodes = self.collect(step)
        t1 = time.perf_counter()
        kept = [e for e in episodes if not e.infra]
        metrics = {"step": float(step)}
        rewards = np.array([e.reward for e in kept], dtype=np.float64)
        metrics.update({
            "reward/mean": float(rewards.mean()) if kept else math.nan,
            "reward/std": float(rewards.std()) if kept else math.nan,
            "reward/solved_frac": float(np.mean([e.solved for e in kept])) if kept else math.nan,
            "episode/count": float(len(episodes)),
            "episode/infra_dropped": float(len(episodes) - len(kept)),
            "episode/turns_mean": float(np.mean([len(e.turns) for e in kept])) if kept else 0.0,
            "episode/sampled_tokens_mean": float(np.mean([e.num_sampled_tokens for e in kept]))
            if kept else 0.0,
            "episode/truncated_frac": float(np.mean([e.truncated for e in kept])) if kept else 0.0,
        })
        metrics.update(self.update(episodes, step))
        t2 = time.perf_counter()
        self.step_count = step
        self.sync_weights()
        t3 = time.perf_counter()
        tokens = sum(len(s.prompt) + len(s.completion) for e in kept for s in e.segments)
        sampled = sum(e.num_sampled_tokens for e in episodes)
        metrics.update({
            "perf/rollout_s": t1 - t0, "perf/train_s": t2 - t1, "perf/sync_s": t3 - t2,
            "perf/step_s": t3 - t0, "perf/tokens_per_s": tokens / max(t3 - t0, 1e-9),
            "perf/sampled_tokens_per_s": sampled / max(t1 - t0, 1e-9),
            "train/lr": float(self.optimizer.param_groups[0]["lr"]),
        })
        self.history.append(metrics)
        return metrics

    # -- logging ----------------------------------------------------------------

    def _log(self, metrics: dict[str, float]) -> None:
        c = self.config.logging
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, allow_nan=True) + "\n")
        if c.tensorboard:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            for k, v in metrics.items():
                if k != "step" and math.isfinite(v):
                    self._writer.add_scalar(k, v, int(metrics["step"]))
            self._writer.flush()

    @staticmethod
    def console_line(m: dict[str, float]) -> str:
        """One line of the most useful metrics of a step."""
        parts = [f"step {int(m['step'])}", f"reward {m.get('reward/mean', math.nan):.3f}"]
        for key, label in (("loss/policy", "pg"), ("loss/value", "vf"), ("ppo/clip_frac", "clip"),
                           ("rollout_corr/kl", "kl_corr"), ("grad/norm", "gnorm"),
                           ("perf/step_s", "s")):
            if key in m:
                parts.append(f"{label} {m[key]:.4g}")
        return " | ".join(parts)

    # -- checkpoints ------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def _model_state(self) -> dict[str, torch.Tensor]:
        if hasattr(self.model, "peft_config"):
            from peft import get_peft_model_state_dict

            return get_peft_model_state_dict(self.model)
        return self.model.state_dict()

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_NNNNNN.pt``: weights (or LoRA adapters), value head,
        optimizer, step, RNG states and the config; keep the newest ``keep_last``."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step_{self.step_count:06d}.pt"
        state = {
            "step": self.step_count,
            "model": self._model_state(),
            "value_head": None if self.value_head is None else self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate()},
            "policy_version": str(self.policy.version),
            "config": config_to_dict(self.config),
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        keep = self.config.checkpoint.keep_last
        for old in sorted(self.checkpoint_dir.glob("step_*.pt"))[:-keep]:
            old.unlink()
        return path

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint in ``out_dir/checkpoints``, or None."""
        found = sorted(self.checkpoint_dir.glob("step_*.pt"))
        return found[-1] if found else None

    def load_checkpoint(self, path: str | Path) -> int:
        """Restore weights, value head, optimizer, step and RNG from ``path``; returns the step."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if hasattr(self.model, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, state["model"])
        else:
            self.model.load_state_dict(state["model"])
        if self.value_head is not None and state["value_head"] is not None:
            self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.step_count = int(state["step"])
        self.history = [row for row in self._read_metrics() if row["step"] <= self.step_count]
        self.sync_weights()
        return self.step_count

    def _read_metrics(self) -> list[dict[str, float]]:
        path = self.out_dir / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    # -- the loop -----------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run up to ``config.steps`` steps (resuming first if asked); log, checkpoint, plot."""
        c = self.config
        ckpt: Path | None = None
        if c.checkpoint.resume:
            latest = self.latest_checkpoint()
            if latest is not None:
                self.load_checkpoint(latest)
                ckpt = latest
        if self.step_count == 0:
            # A fresh run: start the metrics file over.
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
            if (self.out_dir / "tensorboard").is_dir():
                shutil.rmtree(self.out_dir / "tensorboard")
        else:
            self._rewrite_metrics()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(config_to_dict(c), indent=2,
                                                             default=str))
        from tqdm.auto import tqdm

        bar = tqdm(total=c.steps, initial=self.step_count, desc="train", unit="step",
                   disable=not c.logging.progress)
        try:
            while self.step_count < c.steps:
                m = self.step()
                self._log(m)
                bar.update(1)
                bar.set_postfix(reward=f"{m.get('reward/mean', math.nan):.3f}",
                                kl=f"{m.get('rollout_corr/kl', math.nan):.2e}", refresh=False)
                if c.logging.console:
                    bar.write(self.console_line(m))
                every = c.checkpoint.every
                if every and self.step_count % every == 0:
                    ckpt = self.save_checkpoint()
            fresh = ckpt is not None and ckpt.stem == f"step_{self.step_count:06d}"
            if c.checkpoint.save_final and not fresh:
                ckpt = self.save_checkpoint()
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        plot = None
        if c.logging.plot and self.history:
            from trainers.plots import plot_training

            plot = plot_training(self.history, self.out_dir / "metrics.png",
                                 title=f"{c.algo.name} on {c.env.id}")
        return TrainResult(history=list(self.history), out_dir=self.out_dir,
                           step=self.step_count, checkpoint=ckpt, plot=plot)

    def _rewrite_metrics(self) -> None:
        path = self.out_dir / "metrics.jsonl"
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in self.history),
                        encoding="utf-8")

    def close(self) -> None:
        """Release the sampler (and the TensorBoard writer)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.policy.close()


def train(config: TrainConfig) -> TrainResult:
    """Build a :class:`Trainer` for ``config`` and run it to ``config.steps``."""
    trainer = Trainer(config)
    try:
        return trainer.train()
    finally:
        trainer.close()
