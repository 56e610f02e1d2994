"""Benchmark: the trainer/sampler mismatch that broke early gpt-oss RL, and what cures it.

The gpt-oss agentic-RL retrospective (LinkedIn, 2026) reports early runs whose KL and
entropy exploded while the reward did not rise. One cause: the inference engine's
attention kernel ignored gpt-oss's attention sinks while the trainer honoured them, so
the two computed different probabilities for the same tokens; rollout correction
restored stable gradient norms and a rising reward. This file reproduces that on CPU:

* the **sampler** ignores the sinks (a deliberately wrong attention registered only
  here), optionally in bfloat16; the **trainer** uses the correct eager attention in
  float32. Both share one tiny random gpt-oss object (weights always in sync), so every
  difference between their log-probs comes from the sinks (and the precision);
* the task is ``toy-pattern``: write a digit pattern ``--length`` tokens long, reward =
  fraction of positions right. Long sampled sequences let the per-token mismatch compound;
* the trainer is the project's :class:`trainers.train.Trainer` (GRPO,
  ``ppo_loss_with_correction``); only the sampler is replaced, by :class:`SubsetSampler`,
  which computes the LM head on the 11 allowed tokens instead of all 201088 (the same
  distribution the trainer scores, ~100x cheaper on CPU). With matching attention its
  log-probs equal the trainer's (the ``no_mismatch`` arm shows KL ~ 0).

Two regimes (``--head-gains``): a random tiny model is nearly uniform over the allowed
tokens, so ignoring the sinks barely moves it; its LM head is scaled at init to make the
policy as peaked as a trained model's. Gain 2 gives a per-token KL(sampler || trainer) of
~5e-3 at step 1 (the broken-kernel level: a healthy bf16 engine is at ~1e-4..1e-3); gain 8
gives ~6e-2 (gross).

Arms (``--arms``): ``no_mismatch`` (sampler = trainer, no correction), ``none`` (mismatch,
no correction, decoupled: ``pi_old`` is the trainer's own detached log-probs, so the PPO
ratio is exactly 1 on-policy), ``none_bypass`` (mismatch, no correction, the PPO ratio
anchored on the sampler's log-probs: what a trainer that reuses the engine's log-probs as
``pi_old`` does, the retrospective's "ratio not 1 on-policy"), and the mismatch with each
correction preset of :data:`trainers.rollout_correction.PRESETS`: ``token_tis``,
``icepop``, ``token_mask``, ``seq_mis``, ``geo_mask``, ``k3_mask``, ``token_veto`` in
decoupled mode, and ``token_mask_bypass`` (IcePop-style masking in bypass mode).
``--epochs``/``--minibatches`` > 1 adds staleness on top of the mismatch.

Run::

    python benchmarks/rollout_correction.py        # the full grid: 547 s on 2 cores
    python benchmarks/rollout_correction.py --steps 10 --seeds 0 --head-gains 8 \
        --arms none none_bypass token_tis

It prints, per regime, one row per arm (mean ± std over seeds of the final and mean
reward, max sampler/trainer KL, max grad norm, rejected token fraction, final entropy)
and saves ``benchmarks/results/rollout_correction.png`` (one panel per metric over
steps, one column per regime, mean and min-max band over seeds per arm) and
``rollout_correction.json`` next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

from trainers.config import TrainConfig, config_from_dict
from trainers.policies.base import Policy, Sample, SampleRequest
from trainers.policies.hf import _cache_of

SINKLESS = "benchmark_ignore_sinks"

#: arm -> (sampler ignores the sinks?, correction preset, correction overrides)
ARMS: dict[str, tuple[bool, str, dict[str, Any]]] = {
    "no_mismatch": (False, "none", {}),
    "none": (True, "none", {}),
    "token_tis": (True, "token_tis", {}),
    "icepop": (True, "icepop", {}),
    "token_mask": (True, "token_mask", {}),
    "token_mask_bypass": (True, "token_mask", {"mode": "bypass"}),
    "none_bypass": (True, "none", {"mode": "bypass"}),
    "seq_mis": (True, "seq_mis", {}),
    "geo_mask": (True, "geo_mask", {}),
    "k3_mask": (True, "k3_mask", {}),
    "token_veto": (True, "token_veto", {}),
}

#: panels of the figure: (metric key, title, log y axis)
PANELS: tuple[tuple[str, str, bool], ...] = (
    ("reward/mean", "reward (fraction of positions right)", False),
    ("rollout_corr/k3_kl", "sampler-trainer KL per token (k3)", True),
    ("bench/sampler_entropy", "sampler entropy per token (nats)", False),
    ("grad/norm_max", "max grad norm (pre-clip)", True),
    ("rollout_corr/rejected_token_frac", "rejected token fraction", False),
)


# --------------------------------------------------------------------------- the mismatch


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


# --------------------------------------------------------------------------- one run


def make_config(arm: str, seed: int, args: argparse.Namespace, tag: str = "") -> TrainConfig:
    """The training config of one (arm, seed)."""
    _, preset, overrides = ARMS[arm]
    return config_from_dict({
        "steps": args.steps, "seed": seed,
        "model": {"name": "tiny", "dtype": "float32", "attn_implementation": "eager",
                  "device": "cpu", "freeze_input_embeddings": True,
                  "tiny_sink_scale": args.sink_scale, "init_seed": seed},
        "env": {"id": "toy-pattern", "kwargs": {"pattern": args.pattern, "length": args.length,
                                                "max_turns": 1}},
        "rollout": {"tasks_per_step": args.tasks, "group_size": args.group_size,
                    "max_new_tokens": args.length + 1, "temperature": 1.0,
                    "allowed_tokens": "env", "max_batch_size": args.tasks * args.group_size},
        "algo": {"name": "grpo", "lr": args.lr, "epochs": args.epochs,
                 "minibatches": args.minibatches, "clip_low": 0.2, "clip_high": 0.28,
                 "max_grad_norm": args.max_grad_norm},
        "correction": {"preset": preset, **overrides},
        "logging": {"out_dir": str(args.work / tag / arm / str(seed)), "progress": False,
                    "console": False, "tensorboard": False, "plot": False},
        "checkpoint": {"every": 0, "save_final": False},
    })


def run_arm(arm: str, seed: int, head_gain: float, args: argparse.Namespace, bar: Any
            ) -> list[dict[str, float]]:
    """Train one arm with one seed and LM-head gain; returns its per-step metrics."""
    from trainers.train import Trainer, build_model

    config = make_config(arm, seed, args, tag=f"head{head_gain:g}")
    model = build_model(config)
    with torch.no_grad():
        # A random tiny model is nearly uniform over the allowed tokens (small LM-head
        # weights) and nearly a bigram model (attention adds little to the residual
        # stream), so ignoring the sinks barely changes its output. A larger head makes
        # the policy as peaked as a trained model's; a larger attention output makes the
        # attention path, and so the sinks, matter.
        model.get_output_embeddings().weight.mul_(head_gain)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(args.attn_gain)
    sinkless = ARMS[arm][0]
    holder: dict[str, Any] = {}

    class _Trainer(Trainer):
        def collect(self, step: int) -> Any:
            episodes = super().collect(step)
            holder["episodes"] = episodes
            return episodes

    trainer = _Trainer(config, model=model)  # its default sampler is replaced below
    assert trainer.allowed is not None
    trainer.policy = SubsetSampler(model, trainer.allowed.tolist(), bf16=args.bf16_sampler
                                   and sinkless, sinkless=sinkless, seed=seed)
    history = []
    for _ in range(config.steps):
        m = trainer.step()
        lps = [lp for e in holder["episodes"] for lp in _sampled_logprobs(e)]
        # E_q[-log q] over the sampled tokens: an unbiased estimate of the sampler's entropy.
        m["bench/sampler_entropy"] = -statistics.fmean(lps) if lps else math.nan
        history.append(m)
        bar.update(1)
        bar.set_postfix(head=head_gain, arm=arm, seed=seed, reward=f"{m['reward/mean']:.2f}",
                        kl=f"{m.get('rollout_corr/k3_kl', math.nan):.2g}", refresh=False)
    return history


def _sampled_logprobs(episode: Any) -> list[float]:
    out: list[float] = []
    for seg in episode.segments:
        out.extend(float(x) for x, m in zip(seg.logprobs, seg.loss_mask) if m)
    return out


Job = tuple[float, str, int]  # (LM-head gain, arm, seed)


class _NoBar:
    """A progress bar that shows nothing (worker processes report to the parent)."""

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass


def _timed_run(job: Job, args: argparse.Namespace, bar: Any
               ) -> tuple[list[dict[str, float]], float]:
    t0 = time.perf_counter()
    head_gain, arm, seed = job
    hist = run_arm(arm, seed, head_gain, args, bar)
    return hist, time.perf_counter() - t0


def _worker(job: Job, args: argparse.Namespace) -> tuple[list[dict[str, float]], float]:
    """One (head gain, arm, seed) in a worker process (``--jobs`` > 1)."""
    torch.set_num_threads(args.threads)
    register_sinkless_attention()
    return _timed_run(job, args, _NoBar())


# --------------------------------------------------------------------------- report


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Final reward (mean of the last 3 steps), mean reward over all steps (learning speed),
    KL (k3, per token) at step 1 / max / final, max grad norm, mean rejection, entropy."""
    last = history[-3:]

    def col(key: str, rows: Sequence[dict[str, float]]) -> list[float]:
        return [float(h[key]) for h in rows if key in h and math.isfinite(float(h[key]))]

    return {
        "final_reward": statistics.fmean(col("reward/mean", last)),
        "mean_reward": statistics.fmean(col("reward/mean", history)),
        "initial_kl": float(history[0].get("rollout_corr/k3_kl", math.nan)),
        "max_kl": max(col("rollout_corr/k3_kl", history), default=math.nan),
        "final_kl": statistics.fmean(col("rollout_corr/k3_kl", last) or [math.nan]),
        "max_grad_norm": max(col("grad/norm_max", history)),
        "rejected_token_frac": statistics.fmean(col("rollout_corr/rejected_token_frac", history)
                                                or [math.nan]),
        "final_entropy": statistics.fmean(col("bench/sampler_entropy", last)),
    }


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) of ``values`` (std 0 for one value)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def plot(runs: dict[str, dict[str, list[list[dict[str, float]]]]], path: Path,
         title: str) -> Path:
    """One row per metric of :data:`PANELS`, one column per regime; per arm the mean over
    seeds and a min-max band."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    ncol = len(runs)
    fig, axes = plt.subplots(len(PANELS), ncol, figsize=(7.5 * ncol, 2.6 * len(PANELS)),
                             sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for c, (regime, arms) in enumerate(runs.items()):
        for r, (key, label, log) in enumerate(PANELS):
            ax = axes[r, c]
            refs = ("no_mismatch", "none", "none_bypass")  # drawn last, on top
            order = [a for a in arms if a not in refs] + [a for a in refs if a in arms]
            for arm in order:
                seeds, i = arms[arm], list(arms).index(arm)
                vals = np.array([[h.get(key, math.nan) for h in hist] for hist in seeds], float)
                if np.isnan(vals).all():
                    continue
                if log:
                    vals = np.clip(vals, 1e-6, None)  # zeros (all-equal rewards) on a log axis
                x = np.arange(1, vals.shape[1] + 1)
                style = "--" if arm in ("none", "no_mismatch", "none_bypass") else "-"
                color = {"none": "black", "no_mismatch": "grey", "none_bypass": "red"}.get(
                    arm, cmap(i % 10))
                ax.plot(x, np.nanmean(vals, 0), style, color=color, label=arm,
                        lw=2.0 if arm in refs else 1.2)
                ax.fill_between(x, np.nanmin(vals, 0), np.nanmax(vals, 0), color=color,
                                alpha=0.10)
            ax.set_title(f"{regime}: {label}", fontsize=9)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0, c].legend(fontsize=7, ncol=3, loc="best")
        axes[-1, c].set_xlabel("training step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=75)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tasks", type=int, default=4, help="tasks per step")
    p.add_argument("--group-size", type=int, default=8, help="G, episodes per task")
    p.add_argument("--length", type=int, default=64, help="L, digits per answer")
    p.add_argument("--pattern", default="01", help="the digits the answer repeats")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--sink-scale", type=float, default=3.0,
                   help="std of the random sink logits (larger: bigger mismatch)")
    p.add_argument("--head-gains", nargs="+", type=float, default=[2.0, 8.0],
                   help="regimes: multiply the LM head at init by each (larger: a more peaked "
                        "policy and a bigger mismatch; 2 gives a per-token KL ~1e-2, 8 ~1e-1)")
    p.add_argument("--attn-gain", type=float, default=1.0,
                   help="multiply the attention output projections at init (larger: the "
                        "attention path, and so the sinks, matter more)")
    p.add_argument("--bf16-sampler", action="store_true",
                   help="the mismatched sampler also runs in bfloat16")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    p.add_argument("--work", type=Path, default=Path("runs/bench-rollout-correction"),
                   help="scratch directory for the runs' metrics")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rollout_correction.png")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the PNG from the JSON next to --out")
    args = p.parse_args(argv)
    if args.replot:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        hist = {reg: {a: [_rows(c) for c in seeds] for a, seeds in arms.items()}
                for reg, arms in saved["history"].items()}
        print(plot(hist, args.out,
                   "sinkless sampler vs sink-aware trainer:\n" + saved["setting"]))
        return 0
    torch.set_num_threads(args.threads)
    register_sinkless_attention()
    from tqdm.auto import tqdm

    regimes = {g: f"head gain {g:g}" for g in args.head_gains}
    runs: dict[str, dict[str, list[list[dict[str, float]]]]] = {
        regimes[g]: {arm: [] for arm in args.arms} for g in args.head_gains}
    times: dict[tuple[str, str], float] = {}
    t_all = time.perf_counter()
    # seed-major: an interrupted run still covers every arm
    jobs: list[Job] = [(g, arm, seed) for seed in args.seeds for g in args.head_gains
                       for arm in args.arms]
    results: dict[Job, tuple[list[dict[str, float]], float]] = {}
    with tqdm(total=args.steps * len(jobs), desc="rollout correction", unit="step") as bar:
        if args.jobs <= 1:
            for job in jobs:
                results[job] = _timed_run(job, args, bar)
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_worker, job, args): job for job in jobs}
                for fut in cf.as_completed(futures):
                    job = futures[fut]
                    results[job] = fut.result()
                    hist = results[job][0]
                    bar.update(len(hist))
                    bar.set_postfix(done=f"head {job[0]:g} {job[1]}/{job[2]}",
                                    reward=f"{hist[-1]['reward/mean']:.2f}", refresh=False)
    for g, arm, seed in jobs:
        hist, wall = results[g, arm, seed]
        runs[regimes[g]][arm].append(hist)
        times[regimes[g], arm] = times.get((regimes[g], arm), 0.0) + wall
    setting = (f"toy-pattern '{args.pattern}' x {args.length} tokens, sink scale "
               f"{args.sink_scale}, attention gain {args.attn_gain}"
               f"{', bf16 sampler' if args.bf16_sampler else ''}; "
               f"{args.steps} GRPO steps x {args.tasks * args.group_size} episodes, "
               f"lr {args.lr}, {args.epochs} epoch(s) x {args.minibatches} minibatch(es), "
               f"seeds {args.seeds}")
    print(f"\nsampler ignores the sinks, trainer honours them; {setting}")

    def cell(v: tuple[float, float], fmt: str) -> str:
        return f"{v[0]:{fmt}}±{v[1]:{fmt}}"

    rows: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for regime, arms in runs.items():
        rows[regime] = {}
        for arm, seeds in arms.items():
            per_seed = [summarize(h) for h in seeds]
            rows[regime][arm] = {k: spread([s[k] for s in per_seed]) for k in per_seed[0]}
            rows[regime][arm]["wall_s"] = (times[regime, arm], 0.0)
        kl0 = rows[regime].get("none", next(iter(rows[regime].values())))["initial_kl"][0]
        print(f"\n{regime} (per-token KL at step 1 ~ {kl0:.1e}); mean ± std over seeds")
        header = (f"{'arm':<18} {'final reward':>13} {'mean reward':>13} {'max KL':>18} "
                  f"{'max |g|':>12} {'rejected':>12} {'entropy':>12}")
        print(header)
        print("-" * len(header))
        for arm, r in rows[regime].items():
            print(f"{arm:<18} {cell(r['final_reward'], '.3f'):>13} "
                  f"{cell(r['mean_reward'], '.3f'):>13} {cell(r['max_kl'], '.1e'):>18} "
                  f"{cell(r['max_grad_norm'], '.2f'):>12} "
                  f"{cell(r['rejected_token_frac'], '.3f'):>12} "
                  f"{cell(r['final_entropy'], '.3f'):>12}")
    png = plot(runs, args.out, "sinkless sampler vs sink-aware trainer:\n" + setting)
    out_json = args.out.with_suffix(".json")
    out_json.write_text(_compact_json(
        {"setting": setting, "args": {k: str(v) for k, v in vars(args).items()},
         "summary": {reg: {a: {k: {"mean": v[0], "std": v[1]} for k, v in r.items()}
                           for a, r in arm_rows.items()} for reg, arm_rows in rows.items()},
         "history": {reg: {a: [_columns(hist) for hist in seeds] for a, seeds in arms.items()}
                     for reg, arms in runs.items()}}))
    print(f"\nplot: {png}\nresults: {out_json}\ntotal {time.perf_counter() - t_all:.1f} s")
    return 0


def _columns(history: list[dict[str, float]]) -> dict[str, list[float]]:
    """A run's per-step metrics as one list per kept key (``history`` in the JSON)."""
    return {k: [float(h.get(k, math.nan)) for h in history] for k in sorted(_KEEP)}


def _rows(columns: dict[str, list[float | None]]) -> list[dict[str, float]]:
    n = len(next(iter(columns.values())))
    return [{k: math.nan if v[i] is None else float(v[i])  # type: ignore[arg-type]
             for k, v in columns.items()} for i in range(n)]


def _compact_json(data: Any) -> str:
    """JSON with floats rounded to 4 significant digits (the file is committed)."""
    def walk(x: Any) -> Any:
        if isinstance(x, float):
            return float(f"{x:.4g}") if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return json.dumps(walk(data), separators=(",", ":"))


_KEEP = {key for key, _, _ in PANELS} | {
    "rollout_corr/kl", "rollout_corr/rejected_seq_frac", "ppo/clip_frac",
    "episode/sampled_tokens_mean"}


if __name__ == "__main__":
    raise SystemExit(main())
