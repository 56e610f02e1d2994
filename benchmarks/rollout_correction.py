"""Benchmark: a trainer/sampler mismatch reproduced on CPU, and what rollout correction does.

The real-world cause of broken early gpt-oss RL runs: the sampler honoured the
attention sinks and the trainer's kernel ignored them (or the other way round), so the
two computed different log-probs for the same tokens. Here the *sampler* ignores the
sinks (a deliberately wrong attention registered only in this file) and the trainer
uses the correct eager attention. Both share one tiny random gpt-oss object (weights
always in sync), so every difference between their log-probs comes from the sinks.

Each method trains GRPO on ``toy-digit`` for the same steps and seed:

* ``none``: no correction (weights 1, nothing rejected; diagnostics still computed),
* ``token_tis``: token-level truncated importance sampling (cap 2),
* ``seq_mis``: sequence-level masked importance sampling (reject outside [0.5, 2]),
* ``geo_mask``: geometric-mean ratio rejection (outside [0.999, 1.001]).

Run::

    python benchmarks/rollout_correction.py                 # ~2-4 minutes on 2 cores
    python benchmarks/rollout_correction.py --steps 10 --methods none token_tis

It prints a table (final KL between sampler and trainer, max grad norm, final reward,
rejected fraction) and saves ``rollout_correction.png`` (KL, grad norm, reward over
steps, one line per method) and ``rollout_correction.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

from trainers.config import load_config
from trainers.policies.base import Policy, Sample, SampleRequest

SINKLESS = "benchmark_ignore_sinks"
METHODS = ("none", "token_tis", "seq_mis", "geo_mask")


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


class SinklessSampler(Policy):
    """Samples with ``inner`` while the shared model's attention ignores the sinks."""

    def __init__(self, inner: Policy, model: torch.nn.Module) -> None:
        self.inner = inner
        self.model = model
        self.policy_id = f"{inner.policy_id}+sinkless"
        self.version = inner.version

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        cfg = self.model.config
        saved = cfg._attn_implementation
        cfg._attn_implementation = SINKLESS
        try:
            return self.inner.sample(requests)
        finally:
            cfg._attn_implementation = saved


def run_method(method: str, args: argparse.Namespace, bar: Any) -> list[dict[str, float]]:
    """Train one method; returns its per-step metrics."""
    from trainers.policies.hf import TransformersPolicy
    from trainers.train import AllowedTokensModel, Trainer, build_model

    overrides = [
        f"steps={args.steps}", f"seed={args.seed}", f"logging.out_dir={args.out / method}",
        "logging.progress=false", "logging.console=false", "logging.tensorboard=false",
        "logging.plot=false", "checkpoint.save_final=false",
        f"model.tiny_sink_scale={args.sink_scale}", f"algo.lr={args.lr}",
        f"rollout.tasks_per_step={args.tasks}", f"rollout.group_size={args.group_size}",
        f"correction.preset={method}",
    ]
    if args.copy_task:
        overrides.append("env.kwargs.fixed_target=none")
    config = load_config(ROOT / "configs" / "tiny-cpu.toml", overrides)
    model = build_model(config)
    import agent_envs

    env = agent_envs.make(config.env.id, **dict(config.env.kwargs))
    allowed = list(env.allowed_token_ids())
    env.close()
    inner = TransformersPolicy(AllowedTokensModel(model, allowed), pad_token_id=199999,
                               max_batch_size=config.rollout.max_batch_size, seed=args.seed)
    trainer = Trainer(config, model=model, policy=SinklessSampler(inner, model))
    history = []
    for _ in range(config.steps):
        m = trainer.step()
        history.append(m)
        bar.update(1)
        bar.set_postfix(method=method, reward=f"{m['reward/mean']:.2f}",
                        kl=f"{m.get('rollout_corr/kl', math.nan):.3g}", refresh=False)
    return history


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Final KL, max grad norm, final reward (mean of the last 3 steps), rejection."""
    last = history[-3:]

    def mean(key: str) -> float:
        vals = [h[key] for h in last if key in h]
        return sum(vals) / len(vals) if vals else math.nan

    return {
        "final_kl": mean("rollout_corr/kl"),
        "final_k3_kl": mean("rollout_corr/k3_kl"),
        "max_grad_norm": max(h.get("grad/norm_max", 0.0) for h in history),
        "final_reward": mean("reward/mean"),
        "rejected_token_frac": mean("rollout_corr/rejected_token_frac"),
        "max_token_ratio": max(h.get("rollout_corr/ratio_max", 0.0) for h in history),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--tasks", type=int, default=8, help="tasks per step")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--sink-scale", type=float, default=3.0,
                   help="std of the random sink logits (larger: bigger mismatch)")
    p.add_argument("--copy-task", action="store_true",
                   help="toy-digit with the target in the prompt instead of a fixed 7")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench-rollout-correction"))
    args = p.parse_args(argv)
    register_sinkless_attention()
    from tqdm.auto import tqdm

    from trainers.plots import plot_comparison

    runs: dict[str, list[dict[str, float]]] = {}
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    with tqdm(total=args.steps * len(args.methods), desc="benchmark", unit="step") as bar:
        for method in args.methods:
            t0 = time.perf_counter()
            runs[method] = run_method(method, args, bar)
            times[method] = time.perf_counter() - t0
    rows = {m: {**summarize(h), "wall_s": times[m]} for m, h in runs.items()}
    header = (f"{'method':<10} {'final KL':>11} {'final k3 KL':>11} {'max |g|':>9} "
              f"{'max ratio':>10} {'rejected':>9} {'reward':>7} {'time s':>7}")
    print(f"\nsampler ignores sinks (sink scale {args.sink_scale}), trainer honours them; "
          f"{args.steps} GRPO steps x {args.tasks * args.group_size} episodes, seed {args.seed}")
    print(header)
    print("-" * len(header))
    for m, r in rows.items():
        print(f"{m:<10} {r['final_kl']:>11.3e} {r['final_k3_kl']:>11.3e} "
              f"{r['max_grad_norm']:>9.3f} {r['max_token_ratio']:>10.3f} "
              f"{r['rejected_token_frac']:>9.3f} {r['final_reward']:>7.3f} {r['wall_s']:>7.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot_comparison(runs, ["rollout_corr/kl", "grad/norm_max", "reward/mean",
                                 "rollout_corr/rejected_token_frac"],
                          args.out / "rollout_correction.png",
                          title="sinkless sampler vs sink-aware trainer",
                          log_keys=("rollout_corr/kl",))
    (args.out / "rollout_correction.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "summary": rows,
         "history": runs}, indent=1))
    print(f"\nplot: {png}\nresults: {args.out / 'rollout_correction.json'}\n"
          f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
