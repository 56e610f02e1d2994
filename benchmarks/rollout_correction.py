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
* the task is ``toy-cycle``: the env writes a start digit and the model continues a
  hidden cycle (``--pattern``, default ``01234``) for ``--length`` digits. A digit counts
  when it is the successor of the one before and does not repeat within K-1, so every
  constant and every short loop earns ~nothing (the *trivial* line in the figure,
  :func:`agent_envs.envs.toy.trivial_scores`) and the exact answer earns 1.0: a curve that
  climbs past the line is learning the task, not collapsing onto a constant;
* the trainer is the project's :class:`trainers.train.Trainer` (GRPO,
  ``ppo_loss_with_correction``); only the sampler is replaced, by :class:`SubsetSampler`,
  which computes the LM head on the 11 allowed tokens instead of all 201088 (the same
  distribution the trainer scores, ~100x cheaper on CPU), and the LM head's other rows
  are left out of the optimizer (:class:`AllowedRowsHead`: they never get a gradient
  here, and Adam over 12.9M untouched rows doubled the step time). With matching
  attention the sampler's log-probs equal the trainer's (``no_mismatch``: KL ~ 1e-14).

Two mismatch levels (``--head-gains``): a random tiny model is nearly uniform over the
allowed tokens, so ignoring the sinks barely moves it; its LM head is scaled at init to
make the policy as peaked as a trained model's. Gain 2 gives a per-token KL(sampler ||
trainer) of a few 1e-3 at step 1 (the broken-kernel level: a healthy bf16 engine is at
~1e-4..1e-3); gain 8 a few 1e-2 (gross).

Arms (``--arms``): ``no_mismatch`` (sampler = trainer, no correction), ``none`` (mismatch,
no correction, decoupled: ``pi_old`` is the trainer's own detached log-probs, so the PPO
ratio is exactly 1 on-policy), ``none_bypass`` (mismatch, no correction, the PPO ratio
anchored on the sampler's log-probs: what a trainer that reuses the engine's log-probs as
``pi_old`` does, the retrospective's "ratio not 1 on-policy"), and the mismatch with each
correction preset of :data:`trainers.rollout_correction.PRESETS`: ``token_tis``,
``icepop``, ``token_mask``, ``seq_mis``, ``geo_mask``, ``k3_mask``, ``token_veto`` in
decoupled mode, and ``token_mask_bypass`` (IcePop-style masking in bypass mode).

``--sweep`` runs the explosion sweep instead: the knobs that should provoke a KL or
entropy blow-up (mismatch scale, learning rate, epochs x minibatches, sequence length),
one at a time from the gross-mismatch setting, on ``none``, ``none_bypass`` and
``token_tis`` (:data:`SWEEP`).

Run::

    python benchmarks/rollout_correction.py            # the grid -> results/rollout_correction.*
    python benchmarks/rollout_correction.py --sweep    # the sweep -> results/rollout_correction_sweep.*
    python benchmarks/rollout_correction.py --steps 10 --seeds 0 --head-gains 8 \\
        --arms none none_bypass token_tis --out /tmp/rc
    python benchmarks/rollout_correction.py --replot   # redraw the figures from the JSON

Every finished run is saved under ``--work`` (keyed by its settings), so an interrupted
run resumes where it stopped and a rerun with the same settings only redraws. It prints,
per mismatch level, one row per arm (mean ± standard error over seeds of the final and
mean reward, the seeds that learned, max sampler/trainer KL, max grad norm, rejected token
fraction, final entropy, and the mean reward's difference from ``none``) and saves a
figure (one panel per metric over steps, one column per level, mean ± standard error band
per arm, the trivial policies' score as a line) and the JSON next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import json
import math
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

from trainers.config import ConfigError, TrainConfig, config_from_dict
from trainers.policies.base import Policy, Sample, SampleRequest
from trainers.policies.hf import _cache_of

SINKLESS = "benchmark_ignore_sinks"
#: Bump when a run's result would change for the same settings (invalidates --work caches).
RUN_FORMAT = 2

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

#: Mismatch levels: name -> how the tiny model is scaled at init (see :func:`run_arm`).
#: ``head_gain`` sharpens the policy (and every logit difference), ``sink_scale`` is the
#: std of the random sink logits (bigger sinks absorb more attention, so ignoring them
#: changes more), ``attn_gain`` scales the attention output (how much attention, and so
#: the sinks, moves the residual stream).
#: Head gain 2 keeps the policy near uniform at init (entropy ~2.35 of ln 11 = 2.40 nats);
#: at gain 4 or more GRPO collapses it onto a partial answer within ~10 steps even
#: without mismatch, so the gross level raises the sinks and the attention instead.
LEVELS: dict[str, dict[str, float]] = {
    "mild": {"head_gain": 2.0, "sink_scale": 3.0, "attn_gain": 1.0},
    "gross": {"head_gain": 2.0, "sink_scale": 30.0, "attn_gain": 3.0},
}

#: The explosion sweep: setting name -> overrides of the base run (the last of --levels).
#: One knob at a time: mismatch scale, learning rate, epochs x minibatches, sequence length.
SWEEP: dict[str, dict[str, Any]] = {
    "base": {},
    "attn gain 6": {"attn_gain": 6.0},
    "head gain 4": {"head_gain": 4.0},
    "lr 3e-2": {"lr": 3e-2},
    "lr 1e-1": {"lr": 1e-1},
    "2 epochs x 4 mb": {"epochs": 2, "minibatches": 4},
    "4 epochs x 8 mb": {"epochs": 4, "minibatches": 8},
    "length 96": {"length": 96},
}
SWEEP_ARMS = ("none", "none_bypass", "token_tis")

#: panels of the grid figure: (metric key, title, log y axis)
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


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that decides one training run's result (its cache key)."""

    arm: str
    seed: int
    head_gain: float
    steps: int
    tasks: int
    group_size: int
    length: int
    pattern: str
    lr: float
    epochs: int
    minibatches: int
    max_grad_norm: float
    sink_scale: float
    attn_gain: float
    bf16_sampler: bool

    def key(self) -> str:
        """A short hash of the settings (and :data:`RUN_FORMAT`)."""
        blob = json.dumps({"format": RUN_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """``arm/seed`` and the scales, for progress lines."""
        return f"{self.arm}/{self.seed}@{self.head_gain:g},{self.sink_scale:g},{self.attn_gain:g}"


def make_config(spec: RunSpec, work: Path) -> TrainConfig:
    """The training config of one run."""
    _, preset, overrides = ARMS[spec.arm]
    return config_from_dict({
        "steps": spec.steps, "seed": spec.seed,
        "model": {"name": "tiny", "dtype": "float32", "attn_implementation": "eager",
                  "device": "cpu", "freeze_input_embeddings": True,
                  "tiny_sink_scale": spec.sink_scale, "init_seed": spec.seed},
        "env": {"id": "toy-cycle", "kwargs": {"pattern": spec.pattern, "length": spec.length,
                                              "max_turns": 1}},
        "rollout": {"tasks_per_step": spec.tasks, "group_size": spec.group_size,
                    "max_new_tokens": spec.length + 1, "temperature": 1.0,
                    "allowed_tokens": "env", "max_batch_size": spec.tasks * spec.group_size},
        "algo": {"name": "grpo", "lr": spec.lr, "epochs": spec.epochs,
                 "minibatches": spec.minibatches, "clip_low": 0.2, "clip_high": 0.28,
                 "max_grad_norm": spec.max_grad_norm},
        "correction": {"preset": preset, **overrides},
        "logging": {"out_dir": str(work / "runs" / spec.key()), "progress": False,
                    "console": False, "tensorboard": False, "plot": False},
        "checkpoint": {"every": 0, "save_final": False},
    })


def run_arm(spec: RunSpec, work: Path, bar: Any) -> list[dict[str, float]]:
    """Train one run; returns its per-step metrics."""
    from trainers.train import Trainer, build_model

    config = make_config(spec, work)
    model = build_model(config)
    with torch.no_grad():
        # A random tiny model is nearly uniform over the allowed tokens (small LM-head
        # weights) and nearly a bigram model (attention adds little to the residual
        # stream), so ignoring the sinks barely changes its output. A larger head makes
        # the policy as peaked as a trained model's; a larger attention output makes the
        # attention path, and so the sinks, matter.
        model.get_output_embeddings().weight.mul_(spec.head_gain)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(spec.attn_gain)
    sinkless = ARMS[spec.arm][0]
    holder: dict[str, Any] = {}

    class _Trainer(Trainer):
        def collect(self, step: int) -> Any:
            episodes = super().collect(step)
            holder["episodes"] = episodes
            return episodes

    allowed = _allowed_ids(config)
    model.lm_head = AllowedRowsHead(model.lm_head, allowed)  # before the optimizer is built
    trainer = _Trainer(config, model=model)  # its default sampler is replaced below
    trainer.policy = SubsetSampler(model, allowed, bf16=spec.bf16_sampler and sinkless,
                                   sinkless=sinkless, seed=spec.seed)
    history = []
    for _ in range(config.steps):
        m = trainer.step()
        lps = [lp for e in holder["episodes"] for lp in _sampled_logprobs(e)]
        # E_q[-log q] over the sampled tokens: an unbiased estimate of the sampler's entropy.
        m["bench/sampler_entropy"] = -statistics.fmean(lps) if lps else math.nan
        history.append({k: float(v) for k, v in m.items() if k in _KEEP})
        bar.update(1)
        bar.set_postfix(run=spec.label(), reward=f"{m['reward/mean']:.2f}",
                        kl=f"{m.get('rollout_corr/k3_kl', math.nan):.2g}", refresh=False)
    return history


def _allowed_ids(config: TrainConfig) -> list[int]:
    import agent_envs

    env = agent_envs.make(config.env.id, **config.env.kwargs)
    try:
        return sorted(int(t) for t in env.allowed_token_ids())
    finally:
        env.close()


def _sampled_logprobs(episode: Any) -> list[float]:
    out: list[float] = []
    for seg in episode.segments:
        out.extend(float(x) for x, m in zip(seg.logprobs, seg.loss_mask) if m)
    return out


class _NoBar:
    """A progress bar that shows nothing (worker processes report to the parent)."""

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass


def cached_run(spec: RunSpec, work: Path, bar: Any) -> dict[str, Any]:
    """Run ``spec``, or load its saved result from ``work/runs/<key>.json``."""
    path = work / "runs" / f"{spec.key()}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    history = run_arm(spec, work, bar)
    result = {"spec": dataclasses.asdict(spec), "wall_s": time.perf_counter() - t0,
              "history": history}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written result
    return result


def _worker(spec: RunSpec, work: Path, threads: int) -> dict[str, Any]:
    """One run in a worker process (``--jobs`` > 1)."""
    torch.set_num_threads(threads)
    register_sinkless_attention()
    return cached_run(spec, work, _NoBar())


def run_all(specs: Sequence[RunSpec], args: argparse.Namespace) -> dict[RunSpec, dict[str, Any]]:
    """Every run of ``specs`` (cached ones loaded), ``--jobs`` at a time, with a progress bar."""
    from tqdm.auto import tqdm

    cached = [s for s in specs if (args.work / "runs" / f"{s.key()}.json").exists()]
    todo = [s for s in specs if s not in cached]
    print(f"{len(specs)} runs: {len(cached)} saved in {args.work}, {len(todo)} to compute "
          f"({sum(s.steps for s in todo)} steps, --jobs {args.jobs})", flush=True)
    results = {s: cached_run(s, args.work, _NoBar()) for s in cached}
    with tqdm(total=sum(s.steps for s in todo), desc="rollout correction", unit="step") as bar:
        if args.jobs <= 1 or len(todo) <= 1:
            for spec in todo:
                results[spec] = cached_run(spec, args.work, bar)
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_worker, s, args.work, args.threads): s for s in todo}
                for fut in cf.as_completed(futures):
                    spec = futures[fut]
                    results[spec] = fut.result()
                    bar.update(spec.steps)
                    last = results[spec]["history"][-1]
                    bar.set_postfix(done=spec.label(), reward=f"{last['reward/mean']:.2f}",
                                    refresh=False)
    return results


# --------------------------------------------------------------------------- report


def summarize(history: Sequence[dict[str, float]], learned_at: float) -> dict[str, float]:
    """One run's numbers: final reward (mean of the last 5 steps), mean reward over all
    steps (learning speed), learned (final >= ``learned_at``), KL (k3, per token) at step 1 /
    max / final, max grad norm, mean rejected fraction, sampler entropy at step 1 / final /
    its largest rebound (the most it rose above its lowest value so far)."""
    last = history[-5:]

    def col(key: str, rows: Sequence[dict[str, float]]) -> list[float]:
        return [float(h[key]) for h in rows if key in h and math.isfinite(float(h[key]))]

    ent = col("bench/sampler_entropy", history)
    rebound = max((e - min(ent[:i + 1]) for i, e in enumerate(ent)), default=math.nan)
    final = statistics.fmean(col("reward/mean", last))
    return {
        "final_reward": final,
        "mean_reward": statistics.fmean(col("reward/mean", history)),
        "learned": float(final >= learned_at),
        "initial_kl": float(history[0].get("rollout_corr/k3_kl", math.nan)),
        "max_kl": max(col("rollout_corr/k3_kl", history), default=math.nan),
        "final_kl": statistics.fmean(col("rollout_corr/k3_kl", last) or [math.nan]),
        "initial_grad_norm": float(history[0].get("grad/norm_max", math.nan)),
        "max_grad_norm": max(col("grad/norm_max", history), default=math.nan),
        "rejected_token_frac": statistics.fmean(col("rollout_corr/rejected_token_frac", history)
                                                or [math.nan]),
        "initial_entropy": ent[0] if ent else math.nan,
        "final_entropy": statistics.fmean(col("bench/sampler_entropy", last) or [math.nan]),
        "entropy_rebound": rebound,
    }


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of the finite ``values`` (se 0 for one value)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), se


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), its standard error): the two arms' seeds are independent runs."""
    (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
    return ma - mb, math.hypot(sa, sb)


def exploded(s: dict[str, float]) -> list[str]:
    """What blew up in one run (see :data:`BLOWUP`), as words."""
    out = []
    if s["max_kl"] >= BLOWUP["kl_growth"] * max(s["initial_kl"], 1e-12):
        out.append(f"KL x{s['max_kl'] / max(s['initial_kl'], 1e-12):.0f}")
    if s["entropy_rebound"] >= BLOWUP["entropy_rebound"]:
        out.append(f"entropy +{s['entropy_rebound']:.2f}")
    if s["max_grad_norm"] >= BLOWUP["grad_growth"] * max(s["initial_grad_norm"], 1e-12):
        out.append(f"|g| x{s['max_grad_norm'] / max(s['initial_grad_norm'], 1e-12):.0f}")
    return out


#: A run "blows up" if its sampler/trainer KL grows 10x above its step-1 value, its entropy
#: climbs back 0.5 nats above its lowest point, or its grad norm grows 10x above step 1.
BLOWUP = {"kl_growth": 10.0, "entropy_rebound": 0.5, "grad_growth": 10.0}


def _cell(v: tuple[float, float], fmt: str) -> str:
    return f"{v[0]:{fmt}}±{v[1]:{fmt}}"


def print_grid_table(rows: dict[str, dict[str, dict[str, Any]]], n_seeds: int) -> None:
    """One table per mismatch level: mean ± s.e. over seeds per arm."""
    for regime, arms in rows.items():
        print(f"\n{level_title(regime, arms)}; mean ± s.e. over {n_seeds} seeds; 'learned': "
              f"seeds whose final reward >= the --learned-at threshold; 'vs none': "
              f"mean-reward difference ± s.e. (* beyond 2 s.e.)")
        header = (f"{'arm':<18} {'final reward':>13} {'mean reward':>13} {'learned':>7} "
                  f"{'max KL':>17} {'max |g|':>11} {'rejected':>12} {'entropy':>12} "
                  f"{'vs none':>15}")
        print(header)
        print("-" * len(header))
        for arm, r in arms.items():
            d, se = r["vs_none"]
            vs = "" if arm == "none" or not math.isfinite(d) else \
                f"{d:+.3f}±{se:.3f}{'*' if abs(d) > 2 * se else ' '}"
            print(f"{arm:<18} {_cell(r['final_reward'], '.3f'):>13} "
                  f"{_cell(r['mean_reward'], '.3f'):>13} "
                  f"{round(r['learned'][0] * n_seeds):>4}/{n_seeds:<2} "
                  f"{_cell(r['max_kl'], '.1e'):>17} {_cell(r['max_grad_norm'], '.2f'):>11} "
                  f"{_cell(r['rejected_token_frac'], '.3f'):>12} "
                  f"{_cell(r['final_entropy'], '.3f'):>12} {vs:>15}")


def level_title(level: str, arms: dict[str, dict[str, Any]]) -> str:
    """``gross mismatch (head gain 4, sink scale 10, attention gain 1): KL at step 1 ~ 3e-2``."""
    kl0 = arms.get("none", next(iter(arms.values())))["initial_kl"][0]
    scales = LEVELS.get(level)
    how = "" if scales is None else (f" (head gain {scales['head_gain']:g}, sink scale "
                                     f"{scales['sink_scale']:g}, attention gain "
                                     f"{scales['attn_gain']:g})")
    return f"{level} mismatch{how}: per-token KL at step 1 ~ {kl0:.1e}"


def grid_rows(runs: dict[str, dict[str, list[list[dict[str, float]]]]], learned_at: float
              ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and arm: every summary metric as (mean, s.e.), the per-seed values, and the
    mean reward's difference from ``none``."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for regime, arms in runs.items():
        per_seed = {arm: [summarize(h, learned_at) for h in seeds] for arm, seeds in arms.items()}
        rows[regime] = {}
        for arm, sums in per_seed.items():
            row: dict[str, Any] = {k: mean_se([s[k] for s in sums]) for k in sums[0]}
            row["per_seed"] = {k: [s[k] for s in sums] for k in ("final_reward", "mean_reward")}
            row["vs_none"] = difference([s["mean_reward"] for s in sums],
                                        [s["mean_reward"] for s in per_seed["none"]]) \
                if "none" in per_seed else (math.nan, math.nan)
            rows[regime][arm] = row
    return rows


def sweep_rows(results: dict[str, dict[str, list[list[dict[str, float]]]]], learned_at: float
               ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per sweep setting and arm: the summary metrics (mean, s.e.) and what blew up, per seed."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for setting, arms in results.items():
        rows[setting] = {}
        for arm, seeds in arms.items():
            sums = [summarize(h, learned_at) for h in seeds]
            row: dict[str, Any] = {k: mean_se([s[k] for s in sums]) for k in sums[0]}
            row["blowups"] = [exploded(s) for s in sums]
            rows[setting][arm] = row
    return rows


def print_sweep_table(rows: dict[str, dict[str, dict[str, Any]]], n_seeds: int) -> None:
    """One row per (setting, arm): KL at step 1 and max, entropy start/final/rebound, grad
    norm, final reward, and the seeds that blew up."""
    print(f"\nexplosion sweep; mean ± s.e. over {n_seeds} seeds; 'blew up': KL x"
          f"{BLOWUP['kl_growth']:g} over step 1, entropy rebound >= "
          f"{BLOWUP['entropy_rebound']:g} nats, or grad norm x{BLOWUP['grad_growth']:g}")
    header = (f"{'setting':<17} {'arm':<12} {'KL step 1':>9} {'max KL':>9} {'H step 1':>8} "
              f"{'H final':>7} {'H rebound':>9} {'max |g|':>8} {'final reward':>13} blew up")
    print(header)
    print("-" * len(header))
    for setting, arms in rows.items():
        for arm, r in arms.items():
            blew = [b for b in r["blowups"] if b]
            what = f"{len(blew)}/{n_seeds}" + (f" ({'; '.join(blew[0])})" if blew else "")
            print(f"{setting:<17} {arm:<12} {r['initial_kl'][0]:>9.1e} {r['max_kl'][0]:>9.1e} "
                  f"{r['initial_entropy'][0]:>8.2f} {r['final_entropy'][0]:>7.2f} "
                  f"{r['entropy_rebound'][0]:>9.2f} {r['max_grad_norm'][0]:>8.2f} "
                  f"{_cell(r['final_reward'], '.3f'):>13} {what}")


# --------------------------------------------------------------------------- figures


def _band(ax: Any, x: Any, vals: Any, color: Any, style: str, label: str, lw: float) -> None:
    import numpy as np

    mean = np.nanmean(vals, 0)
    n = np.sum(np.isfinite(vals), 0)
    se = np.nanstd(vals, 0, ddof=1) / np.sqrt(np.maximum(n, 1)) if vals.shape[0] > 1 \
        else np.zeros_like(mean)
    ax.plot(x, mean, style, color=color, label=label, lw=lw)
    ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.15)


def plot_grid(runs: dict[str, dict[str, list[list[dict[str, float]]]]], trivial: float,
              path: Path, title: str, columns: dict[str, str] | None = None) -> Path:
    """One row per metric of :data:`PANELS`, one column per mismatch level; per arm the mean
    over seeds and a ± 1 s.e. band; the trivial policies' score as a line on the reward."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    ncol = len(runs)
    fig, axes = plt.subplots(len(PANELS), ncol, figsize=(7.5 * ncol, 2.7 * len(PANELS)),
                             sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab10")
    refs = ("no_mismatch", "none", "none_bypass")  # drawn last, on top
    colors = {"none": "black", "no_mismatch": "grey", "none_bypass": "red"}
    for c, (regime, arms) in enumerate(runs.items()):
        order = [a for a in arms if a not in refs] + [a for a in refs if a in arms]
        for r, (key, label, log) in enumerate(PANELS):
            ax = axes[r, c]
            for arm in order:
                vals = np.array([[h.get(key, math.nan) for h in hist] for hist in arms[arm]],
                                float)
                if np.isnan(vals).all():
                    continue
                if log:
                    vals = np.clip(vals, 1e-6, None)  # zeros (all-equal rewards) on a log axis
                x = np.arange(1, vals.shape[1] + 1)
                _band(ax, x, vals, colors.get(arm, cmap(list(ARMS).index(arm) % 10)),
                      "--" if arm in refs else "-", arm, 2.0 if arm in refs else 1.2)
            if key == "reward/mean":
                ax.axhline(trivial, color="black", ls=":", lw=1.5,
                           label=f"trivial policies ({trivial:.3f})")
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{(columns or {}).get(regime, regime)}:\n{label}", fontsize=8)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0, c].legend(fontsize=7, ncol=3, loc="upper left")
        axes[-1, c].set_xlabel("training step")
    fig.suptitle(textwrap.fill(title, 110 * ncol), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_sweep(results: dict[str, dict[str, list[list[dict[str, float]]]]], trivial: float,
               path: Path, title: str) -> Path:
    """One column per sweep setting; rows: KL, entropy, grad norm, reward over steps; one
    curve per (arm, seed) so that a single seed's blow-up stays visible."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    keys = (("rollout_corr/k3_kl", "KL (k3)", True), ("bench/sampler_entropy", "entropy", False),
            ("grad/norm_max", "max |g|", True), ("reward/mean", "reward", False))
    ncol = len(results)
    fig, axes = plt.subplots(len(keys), ncol, figsize=(2.6 * ncol, 2.1 * len(keys)),
                             sharex="col", sharey="row", squeeze=False)
    colors = {"none": "black", "none_bypass": "red", "token_tis": "tab:blue"}
    for c, (setting, arms) in enumerate(results.items()):
        for r, (key, label, log) in enumerate(keys):
            ax = axes[r, c]
            for arm, seeds in arms.items():
                for i, hist in enumerate(seeds):
                    y = np.array([h.get(key, math.nan) for h in hist], float)
                    if log:
                        y = np.clip(y, 1e-6, None)
                    ax.plot(np.arange(1, len(y) + 1), y, color=colors.get(arm, "tab:green"),
                            lw=0.9, alpha=0.8, label=arm if i == 0 else None)
            if key == "reward/mean":
                ax.axhline(trivial, color="black", ls=":", lw=1.2)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(setting, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[-1, c].set_xlabel("step", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="best")
    fig.suptitle(textwrap.fill(title, 40 * ncol), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS),
                   help=f"arms to run (default: all): {', '.join(ARMS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--tasks", type=int, default=8, help="tasks (start digits) per step")
    p.add_argument("--group-size", type=int, default=8, help="G, episodes per task")
    p.add_argument("--length", type=int, default=32, help="L, digits per answer")
    p.add_argument("--pattern", default="01234", help="the hidden cycle's distinct digits")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--levels", nargs="+", default=list(LEVELS),
                   help="mismatch levels (LEVELS: " + "; ".join(
                       f"{k}: head gain {v['head_gain']:g}, sink scale {v['sink_scale']:g}, "
                       f"attention gain {v['attn_gain']:g}" for k, v in LEVELS.items())
                   + "); --sweep starts from the last")
    p.add_argument("--bf16-sampler", action="store_true",
                   help="the mismatched sampler also runs in bfloat16")
    p.add_argument("--learned-at", type=float, default=0.5,
                   help="a seed 'learned' if its final reward (last 5 steps) reaches this")
    p.add_argument("--sweep", action="store_true",
                   help="run the explosion sweep (SWEEP settings x none/none_bypass/token_tis) "
                        "instead of the grid")
    p.add_argument("--sweep-settings", nargs="+", default=list(SWEEP),
                   help=f"sweep settings to run (default: all): {'; '.join(SWEEP)}")
    p.add_argument("--sweep-seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    p.add_argument("--work", type=Path, default=ROOT / "runs/bench-rollout-correction",
                   help="directory for each finished run's metrics (reused by reruns)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results",
                   help="directory for rollout_correction{,_sweep}.{png,json} (or a .png path)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the figure from the JSON in --out")
    return p


def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad arguments before any compute (``p.error``: usage, the message, exit 2)."""
    for arm in args.arms:
        if arm not in ARMS:
            p.error(f"--arms: unknown arm {arm!r}.{_did_you_mean(arm, list(ARMS))} "
                    f"Arms: {', '.join(ARMS)}.")
    for name in args.sweep_settings:
        if name not in SWEEP:
            p.error(f"--sweep-settings: unknown setting {name!r}."
                    f"{_did_you_mean(name, list(SWEEP))} Settings: {'; '.join(SWEEP)}.")
    for flag, seeds in (("--seeds", args.seeds), ("--sweep-seeds", args.sweep_seeds)):
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            p.error(f"{flag} {' '.join(map(str, seeds))}: seeds must be distinct and >= 0, "
                    f"e.g. {flag} 0 1 2.")
    positive = {"--steps": args.steps, "--jobs": args.jobs, "--threads": args.threads}
    for flag, v in positive.items():
        if v < 1:
            p.error(f"{flag} {v}: must be >= 1.")
    if args.steps < 5:
        p.error(f"--steps {args.steps}: the final reward is the mean of the last 5 steps; "
                f"use --steps 5 or more.")
    for level in args.levels:
        if level not in LEVELS:
            p.error(f"--levels: unknown level {level!r}.{_did_you_mean(level, list(LEVELS))} "
                    f"Levels: {', '.join(LEVELS)}.")
    if not 0 < args.learned_at <= 1:
        p.error(f"--learned-at {args.learned_at}: a reward threshold in (0, 1], e.g. 0.8.")
    try:
        from agent_envs.envs.toy import CycleTaskSource

        CycleTaskSource(args.pattern, args.length)
        # What the trainer would refuse (minibatches vs episodes, ...), for every setting.
        for _, spec in (_sweep_specs(args) if args.sweep else _specs(args)[:1]):
            make_config(spec, args.work)
    except (ValueError, ConfigError) as e:
        p.error(str(e))
    args.figure = _figure_path(p, args.out, "rollout_correction_sweep" if args.sweep
                               else "rollout_correction")
    if args.replot:
        if not args.figure.with_suffix(".json").is_file():
            p.error(f"--replot: no results at {args.figure.with_suffix('.json')}; run the "
                    f"benchmark first (or point --out at the directory that holds them).")
        return
    _writable_dir(p, "--work", args.work)


def _figure_path(p: argparse.ArgumentParser, out: Path, stem: str) -> Path:
    if out.suffix:
        if out.suffix != ".png":
            p.error(f"--out {out}: give a directory (the figure and the JSON are written into "
                    f"it as {stem}.png / .json) or a .png path, not a {out.suffix!r} file.")
        _writable_dir(p, "--out", out.parent)
        return out
    _writable_dir(p, "--out", out)
    return out / f"{stem}.png"


def _writable_dir(p: argparse.ArgumentParser, flag: str, path: Path) -> None:
    if path.exists() and not path.is_dir():
        p.error(f"{flag} {path}: is a file, not a directory. Give a directory path.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        p.error(f"{flag} {path}: cannot write there ({e.strerror}). Give a writable directory.")


def _base_spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(arm="none", seed=0, steps=args.steps, tasks=args.tasks,
                   group_size=args.group_size, length=args.length, pattern=args.pattern,
                   lr=args.lr, epochs=args.epochs, minibatches=args.minibatches,
                   max_grad_norm=args.max_grad_norm, bf16_sampler=args.bf16_sampler,
                   **LEVELS[args.levels[-1]])  # type: ignore[arg-type]


def _specs(args: argparse.Namespace) -> list[tuple[str, RunSpec]]:
    """The grid's (mismatch level, run)s, seed-major (an interrupted run covers every arm)."""
    base = _base_spec(args)
    return [(level, dataclasses.replace(base, arm=arm, seed=seed, **LEVELS[level]))
            for seed in args.seeds for level in args.levels for arm in args.arms]


def _sweep_specs(args: argparse.Namespace) -> list[tuple[str, RunSpec]]:
    """The sweep's (setting, run)s, seed-major."""
    base = _base_spec(args)
    return [(name, dataclasses.replace(base, arm=arm, seed=seed, **SWEEP[name]))
            for seed in args.sweep_seeds for name in args.sweep_settings for arm in SWEEP_ARMS]


def _order(args: argparse.Namespace, group: str) -> int:
    names = args.sweep_settings if args.sweep else args.levels
    return names.index(group)


def _setting(args: argparse.Namespace) -> str:
    return (f"toy-cycle '{args.pattern}' x {args.length} digits"
            f"{', bf16 sampler' if args.bf16_sampler else ''}; {args.steps} GRPO steps x {args.tasks * args.group_size} episodes, lr {args.lr}, "
            f"{args.epochs} epoch(s) x {args.minibatches} minibatch(es)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or the sweep, or a replot); returns 0."""
    p = parser()
    args = p.parse_args(argv)
    check_args(p, args)
    from agent_envs.envs.toy import trivial_scores

    out_json = args.figure.with_suffix(".json")
    if args.replot:
        saved = json.loads(out_json.read_text())
        hist = {reg: {a: [_rows(c) for c in seeds] for a, seeds in arms.items()}
                for reg, arms in saved["history"].items()}
        if saved["mode"] == "sweep":
            print(plot_sweep(hist, saved["trivial"]["trivial"], args.figure, saved["title"]))
        else:
            print(plot_grid(hist, saved["trivial"]["trivial"], args.figure, saved["title"],
                            saved["columns"]))
        return 0
    torch.set_num_threads(args.threads)
    register_sinkless_attention()
    t_all = time.perf_counter()
    trivial = trivial_scores(args.pattern, args.length)
    specs = _sweep_specs(args) if args.sweep else _specs(args)
    results = run_all([spec for _, spec in specs], args)
    groups: dict[str, dict[str, list[list[dict[str, float]]]]] = {}
    for group, spec in sorted(specs, key=lambda gs: (_order(args, gs[0]), gs[1].seed)):
        groups.setdefault(group, {}).setdefault(spec.arm, []).append(
            results[spec]["history"])
    compute_s = sum(r["wall_s"] for r in results.values())
    setting = _setting(args)
    print(f"\nsampler ignores the sinks, trainer honours them; {setting}")
    print(f"trivial policies (expected reward over starts): best constant "
          f"{trivial['best_constant']:.3f}, best loop of 2-4 digits "
          f"{trivial['best_short_loop']:.3f}, uniform over the pattern {trivial['uniform']:.3f}")
    if args.sweep:
        rows = sweep_rows(groups, args.learned_at)
        print_sweep_table(rows, len(args.sweep_seeds))
        title = (f"explosion sweep (one knob at a time from the {args.levels[-1]!r} level); "
                 f"{setting}; seeds {args.sweep_seeds}")
        png = plot_sweep(groups, trivial["trivial"], args.figure, title)
    else:
        rows = grid_rows(groups, args.learned_at)
        print_grid_table(rows, len(args.seeds))
        title = f"sinkless sampler vs sink-aware trainer: {setting}; seeds {args.seeds}"
        columns = {level: level_title(level, arms) for level, arms in rows.items()}
        png = plot_grid(groups, trivial["trivial"], args.figure, title, columns)
    out_json.write_text(_compact_json({
        "mode": "sweep" if args.sweep else "grid", "setting": setting, "title": title,
        "args": {k: str(v) for k, v in vars(args).items()}, "trivial": trivial,
        "learned_at": args.learned_at, "blowup": BLOWUP, "levels": LEVELS,
        "columns": {} if args.sweep else columns,
        "compute_s": compute_s, "summary": rows,
        "history": {g: {a: [_columns(h) for h in seeds] for a, seeds in arms.items()}
                    for g, arms in groups.items()}}))
    print(f"\nplot: {png}\nresults: {out_json}\nruns: {compute_s:.0f} s of compute "
          f"(sum over runs, this and earlier invocations); this invocation "
          f"{time.perf_counter() - t_all:.0f} s wall with --jobs {args.jobs}")
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
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return json.dumps(walk(data), separators=(",", ":"))


_KEEP = {key for key, _, _ in PANELS} | {
    "rollout_corr/kl", "rollout_corr/rejected_seq_frac", "ppo/clip_frac",
    "episode/sampled_tokens_mean", "perf/step_s"}


if __name__ == "__main__":
    raise SystemExit(main())
