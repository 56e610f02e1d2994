"""gpt-oss-20b-shaped training on one GPU: memory, speed, sink-aware attention, log-prob gap.

No weights can be downloaded here, so the model is *randomly initialised* from
gpt-oss-20b's real architecture (:func:`trainers.models.gpt_oss_20b_config`: 24 layers,
hidden 2880, 32 experts top-4, 64 query / 8 KV heads of 64, sliding window 128 on every
other layer, yarn rope, attention sinks, the 201088-token vocabulary; 20.9B parameters,
bf16). Speed and memory do not depend on the weights' values; the log-prob gaps of a
random model are indicative only (a trained model's distributions are sharper).

Three sections, one command, progress on stdout, a table at the end and a JSON file:

1. **train**: ``Trainer.update`` of the ``configs/gpt-oss-20b.toml`` preset (LoRA r=32 on
   attention and experts, gradient checkpointing, chunked log-probs, a sink-aware
   attention; the transformers sampler instead of vLLM, which the device lacks) on
   synthetic single-turn samples of 4k / 8k / 16k tokens (2 samples per step, 2
   microbatches): seconds, tokens/s, peak GPU memory, loss, grad norm, whether the LoRA
   weights moved, and the exactness metrics (``ppo/ratio_max_abs_dev`` must be 0; the
   sampler log-probs are the trainer's own no-grad scoring, so
   ``rollout_corr/is_weight_max_abs_dev`` shows whether the training forward reproduces
   it bit for bit on this GPU).
2. **attention**: a 2-layer slice with the real widths (one sliding, one full layer;
   routing fixed so that expert choice cannot flip on last-bit differences), forward
   and backward with each sink-aware implementation against transformers'
   ``eager`` reference at the same lengths: max / relative error of the output, relative
   error of the gradients, seconds and peak memory (eager's ``T x T`` scores may not fit
   at 16k: an out-of-memory is reported as such); up to 4k also every implementation's
   (bf16 eager's too) error against a float32 eager reference.
3. **logprob gap**: the transformers sampler (KV cache, eval mode) samples from a random
   prompt; the trainer scores prompt + completion (full forward, train mode, gradient
   checkpointing, chunked log-probs). Max and mean ``|logp_sampler - logp_trainer|``.

Usage::

    python benchmarks/gpt_oss_20b_gpu.py                 # GPU (H100/H200), ~8 minutes
    python benchmarks/gpt_oss_20b_gpu.py --dry-run       # tiny config, CPU, seconds

``--dry-run`` runs the same code with a tiny gpt-oss (2 layers, width 64, real
vocabulary) in float32 on CPU, with ``fused_sinks`` attention; the tests run it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch

from agent_envs.rollout.episode import Episode, Segment, Turn
from trainers.config import load_config
from trainers.models import (
    gpt_oss_20b_config,
    register_sink_attention,
    tiny_gpt_oss_config,
)
from trainers.train import Trainer, build_model, enable_checkpointing, token_logprobs

PRESET = ROOT / "configs" / "gpt-oss-20b.toml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpt_oss_20b_gpu.json"
_PAD = 199999
_GIB = 1024**3


@dataclass
class Plan:
    """What one run measures (``--dry-run`` shrinks every size)."""

    dry_run: bool
    device: str
    dtype: str
    attn: str
    lengths: list[int]
    steps: int
    completion_tokens: int
    compare_impls: list[str]
    gap_prompt: int
    gap_new_tokens: int
    budget_s: float
    fp32_ref_max_len: int = 0
    seed: int = 0


@dataclass
class Report:
    """Everything measured; written as JSON after every section."""

    meta: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)
    logprob_gap: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Clock:
    """Wall time since start, a budget, and progress lines."""

    def __init__(self, budget_s: float) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def say(self, msg: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- helpers


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / _GIB
    return None


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def random_gpt_oss(config: Any, *, device: str, dtype: torch.dtype, seed: int,
                   sink_scale: float = 1.0) -> torch.nn.Module:
    """A randomly initialised ``GptOssForCausalLM`` built directly on ``device`` in ``dtype``.

    Sinks are drawn with std ``sink_scale`` (the library's 0.02 would hide any kernel
    that ignores them); everything else keeps transformers' initialisation.
    """
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = GptOssForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(device=device, dtype=dtype)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for layer in model.model.layers:
            sinks = layer.self_attn.sinks
            sinks.copy_((torch.randn(sinks.shape, generator=gen) * sink_scale).to(sinks))
    return model


def model_config(plan: Plan, **overrides: Any) -> Any:
    """gpt-oss-20b's real config (GPU) or a tiny one with the same layer pattern (dry run)."""
    if plan.dry_run:
        layers = overrides.pop("num_hidden_layers", 2)
        return tiny_gpt_oss_config(num_hidden_layers=layers, sliding_window=8,
                                   max_position_embeddings=4096, **overrides)
    return gpt_oss_20b_config(**overrides)


def synthetic_episodes(length: int, completion: int, *, step: int, seed: int,
                       score: Callable[[torch.Tensor], torch.Tensor]) -> list[Episode]:
    """Two single-turn episodes of ``length`` tokens (one group; rewards 1 and 0).

    The last ``completion`` tokens (at most half the sequence) are the "sampled" ones;
    their sampler log-probs are ``score`` (the trainer's own no-grad scoring).
    """
    completion = max(1, min(completion, length // 2))
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    out = []
    for i, reward in enumerate((1.0, 0.0)):
        ids = torch.randint(0, 199998, (1, length), generator=gen)
        lp = score(ids)[0].float().cpu()
        prompt = ids[0, : length - completion].tolist()
        seg = Segment(prompt=prompt)
        seg.add_sampled(ids[0, length - completion:].tolist(),
                        lp[length - completion:].tolist())
        out.append(Episode(
            episode_id=f"g0-e{i}", env_id="synthetic-v0", env_version="v0",
            task_id="synthetic", group_id=0, index=i, seed=step, sample_seed=step,
            policy_id="random-gpt-oss", policy_version=str(step), segments=[seg],
            turns=[Turn(segment=0, start=0, end=completion, finish_reason="length")],
            reward=reward, terminated=False, truncated=True, truncated_reason="length"))
    return out


# --------------------------------------------------------------------------- sections


def build_trainer(plan: Plan, out_dir: Path) -> Trainer:
    """The 20b preset (overridden where the device cannot follow it) on a random model."""
    overrides = [
        f"model.device={plan.device}", f"model.dtype={plan.dtype}",
        f"model.attn_implementation={plan.attn}", "rollout.sampler=transformers",
        "rollout.tasks_per_step=1", "rollout.group_size=2", "algo.minibatches=1",
        "algo.microbatches=2", f"logging.out_dir={out_dir}", "logging.progress=false",
        "logging.console=false", "logging.tensorboard=false", "logging.plot=false",
    ]
    config = load_config(PRESET, overrides)
    base = random_gpt_oss(model_config(plan), device=plan.device,
                          dtype=getattr(torch, plan.dtype), seed=plan.seed)
    model = build_model(config, base=base)
    return Trainer(config, model=model)


def lora_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()
            if "lora_" in n and p.requires_grad}


def run_train(plan: Plan, trainer: Trainer, report: Report, clock: Clock) -> None:
    """A few ``Trainer.update`` steps at each length."""
    before = lora_snapshot(trainer.model)
    step = 0
    for length in plan.lengths:
        for rep in range(plan.steps):
            if clock.left() < 0:
                report.skipped.append(f"train L={length} step {rep + 1}: over budget")
                continue
            step += 1
            clock.say(f"train: L={length} step {rep + 1}/{plan.steps}")
            row: dict[str, Any] = {"length": length, "step": rep + 1,
                                   "samples": 2, "tokens": 2 * length,
                                   "attn": trainer.model.config._attn_implementation}
            try:
                episodes = synthetic_episodes(length, plan.completion_tokens, step=step,
                                              seed=plan.seed, score=trainer.score_tokens)
                _reset_peak(plan.device)
                _sync(plan.device)
                t0 = time.perf_counter()
                m = trainer.update(episodes, step)
                _sync(plan.device)
                dt = time.perf_counter() - t0
                row.update({
                    "seconds": dt, "tokens_per_s": 2 * length / dt,
                    "peak_mem_gib": _peak_gib(plan.device),
                    "loss": m.get("loss/total"), "grad_norm": m.get("grad/norm"),
                    "microbatches": m.get("train/microbatches"),
                    "ratio_max_abs_dev": m.get("ppo/ratio_max_abs_dev"),
                    "is_weight_max_abs_dev": m.get("rollout_corr/is_weight_max_abs_dev"),
                    "logp_abs_diff_max": m.get("rollout_corr/logp_abs_diff_max"),
                })
            except Exception as e:  # noqa: BLE001 - report and go on to the next size
                row["error"] = "out of memory" if _is_oom(e) else f"{type(e).__name__}: {e}"
                report.errors.append(f"train L={length}: {row['error']}")
                trainer.optimizer.zero_grad(set_to_none=True)
                _reset_peak(plan.device)
                impl = trainer.model.config._attn_implementation
                if not _is_oom(e) and impl != "fused_sinks":
                    # A kernel that fails here (e.g. flex-attention's compile) should not
                    # cost the whole section: the remaining steps use fused_sinks.
                    register_sink_attention()
                    trainer.model.config._attn_implementation = "fused_sinks"
                    report.meta["attn_fallback"] = f"{impl} failed ({row['error'][:200]}); "\
                                                   "later steps use fused_sinks"
                    clock.say(f"  !! {impl} failed, falling back to fused_sinks")
            report.train.append(row)
            clock.say(f"  -> {_fmt_train(row)}")
    after = lora_snapshot(trainer.model)
    changed = sum(not torch.equal(before[n], after[n]) for n in before)
    report.meta["lora_tensors"] = len(before)
    report.meta["lora_tensors_changed"] = changed


def _attn_case(plan: Plan, model: torch.nn.Module, impl: str, ids: torch.Tensor,
               proj: torch.Tensor) -> dict[str, Any]:
    model.config._attn_implementation = impl
    model.zero_grad(set_to_none=True)
    _reset_peak(plan.device)
    _sync(plan.device)
    t0 = time.perf_counter()
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
    loss = (hidden.float() * proj).sum()
    loss.backward()
    _sync(plan.device)
    dt = time.perf_counter() - t0
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()
             if p.grad is not None and ("self_attn" in n)}
    return {"hidden": hidden.detach().float().cpu(), "grads": grads, "seconds": dt,
            "peak_mem_gib": _peak_gib(plan.device)}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def run_attention(plan: Plan, report: Report, clock: Clock) -> None:
    """Sink-aware implementations vs eager on a 2-layer slice (sliding + full layer)."""
    register_sink_attention()
    model = random_gpt_oss(model_config(plan, num_hidden_layers=2), device=plan.device,
                           dtype=getattr(torch, plan.dtype), seed=plan.seed + 1)
    # Fixed routing (router weights 0, distinct biases: every token takes the same top-k
    # experts). With random routers, last-bit differences flip the top-k choice of
    # near-tied tokens and the expert outputs swamp what this section measures.
    with torch.no_grad():
        for layer in model.model.layers:
            router = layer.mlp.router
            router.weight.zero_()
            router.bias.copy_(torch.linspace(1.0, 0.0, router.bias.numel()).to(router.bias))
    model.train()
    enable_checkpointing(model)
    hidden_size = int(model.config.hidden_size)
    # A float32 eager reference where it fits: is bf16 eager itself any closer to the
    # truth than the sink-aware kernels?
    model32 = None
    if plan.dtype != "float32" and any(n <= plan.fp32_ref_max_len for n in plan.lengths):
        model32 = copy.deepcopy(model).float()
    for length in plan.lengths:
        gen = torch.Generator().manual_seed(plan.seed + length)
        ids = torch.randint(0, 199998, (1, length), generator=gen).to(plan.device)
        proj = torch.randn(1, length, hidden_size, generator=gen).to(plan.device)
        ref: dict[str, Any] | None = None
        ref32: dict[str, Any] | None = None
        if model32 is not None and length <= plan.fp32_ref_max_len and clock.left() > 0:
            clock.say(f"attention: L={length} eager float32 (reference)")
            try:
                ref32 = _attn_case(plan, model32, "eager", ids, proj)
            except Exception as e:  # noqa: BLE001 - then rows carry no fp32 errors
                report.errors.append(f"attention L={length} fp32 reference: "
                                     f"{'out of memory' if _is_oom(e) else e}")
                model32.zero_grad(set_to_none=True)
                _reset_peak(plan.device)
        for impl in ["eager", *plan.compare_impls]:
            if clock.left() < 0:
                report.skipped.append(f"attention L={length} {impl}: over budget")
                continue
            clock.say(f"attention: L={length} {impl}")
            row: dict[str, Any] = {"length": length, "impl": impl}
            try:
                res = _attn_case(plan, model, impl, ids, proj)
                row.update({"seconds": res["seconds"], "peak_mem_gib": res["peak_mem_gib"]})
                if impl == "eager":
                    ref = res
                elif ref is not None:
                    row.update({
                        "fwd_max_abs": float((res["hidden"] - ref["hidden"]).abs().max()),
                        "fwd_rel": _rel(res["hidden"], ref["hidden"]),
                        "grad_rel_max": max(_rel(res["grads"][n], g)
                                            for n, g in ref["grads"].items()),
                        "speedup_vs_eager": ref["seconds"] / res["seconds"],
                    })
                else:
                    row["note"] = "no eager reference at this length"
                if ref32 is not None:
                    row["fwd_rel_fp32"] = _rel(res["hidden"], ref32["hidden"])
                    row["grad_rel_fp32"] = max(_rel(res["grads"][n], g)
                                               for n, g in ref32["grads"].items())
                del res
            except Exception as e:  # noqa: BLE001 - an OOM of eager is a finding
                row["error"] = "out of memory" if _is_oom(e) else f"{type(e).__name__}: {e}"
                if impl != "eager":
                    report.errors.append(f"attention L={length} {impl}: {row['error']}")
                model.zero_grad(set_to_none=True)
                _reset_peak(plan.device)
            report.attention.append(row)
            clock.say(f"  -> {_fmt_attn(row)}")
        ref = ref32 = None
    del model, model32
    _reset_peak(plan.device)


def run_gap(plan: Plan, trainer: Trainer, report: Report, clock: Clock) -> None:
    """The transformers sampler's log-probs vs the trainer's, same model, same GPU."""
    from agent_envs.rollout.policy import SampleRequest, SamplingParams
    from trainers.policies.hf import TransformersPolicy

    if clock.left() < 0:
        report.skipped.append("logprob gap: over budget")
        return
    clock.say(f"logprob gap: prompt {plan.gap_prompt}, {plan.gap_new_tokens} new tokens")
    gen = torch.Generator().manual_seed(plan.seed + 7)
    prompt = torch.randint(0, 199998, (plan.gap_prompt,), generator=gen).tolist()
    policy = TransformersPolicy(trainer.model, pad_token_id=_PAD, seed=plan.seed)
    t0 = time.perf_counter()
    [sample] = policy.sample([SampleRequest(
        prompt=prompt, max_tokens=plan.gap_new_tokens,
        params=SamplingParams(temperature=1.0, seed=plan.seed), stop_token_ids=())])
    sample_s = time.perf_counter() - t0
    ids = torch.tensor([prompt + sample.token_ids], device=plan.device)
    c = trainer.config
    trainer.model.train()
    logp, _, _ = token_logprobs(trainer.model, ids, torch.ones_like(ids),
                                temperature=c.rollout.temperature,
                                chunk_size=c.model.logprob_chunk_size)
    train_lp = logp[0, len(prompt):].detach().float().cpu()
    nograd_lp = trainer.score_tokens(ids)[0, len(prompt):].float().cpu()
    kv = torch.tensor(sample.logprobs)
    d = (kv - train_lp).abs()
    report.logprob_gap = {
        "prompt_tokens": len(prompt), "new_tokens": len(sample.token_ids),
        "sample_seconds": sample_s,
        "sampler_vs_trainer_max_abs": float(d.max()),
        "sampler_vs_trainer_mean_abs": float(d.mean()),
        "sampler_vs_trainer_mean_signed": float((kv - train_lp).mean()),
        "nograd_vs_trainer_max_abs": float((nograd_lp - train_lp).abs().max()),
        "sampler_mean_logprob": float(kv.mean()),
    }
    clock.say(f"  -> max |diff| {d.max():.3g}, mean {d.mean():.3g}")


# --------------------------------------------------------------------------- output


def _f(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _fmt_train(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return (f"{r['seconds']:.2f}s, {r['tokens_per_s']:.0f} tok/s, peak "
            f"{_f(r['peak_mem_gib'], '.1f')} GiB, loss {_f(r['loss'])}")


def _fmt_attn(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return (f"{r['seconds']:.2f}s, fwd_rel {_f(r.get('fwd_rel'))}, "
            f"grad_rel {_f(r.get('grad_rel_max'))}")


def table(report: Report) -> str:
    """The figures as Markdown tables."""
    lines = ["train (Trainer.update, 2 samples x L tokens, 2 microbatches, LoRA)", "",
             ("| L | step | s | tokens/s | peak GiB | loss | grad norm | ratio dev | "
              "IS-weight dev |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in report.train:
        if "error" in r:
            lines.append(f"| {r['length']} | {r['step']} | {r['error']} |||||||")
            continue
        lines.append(f"| {r['length']} | {r['step']} | {r['seconds']:.2f} | "
                     f"{r['tokens_per_s']:.0f} | {_f(r['peak_mem_gib'], '.1f')} | "
                     f"{_f(r['loss'])} | {_f(r['grad_norm'])} | "
                     f"{_f(r['ratio_max_abs_dev'])} | {_f(r['is_weight_max_abs_dev'])} |")
    lines += ["", "attention vs eager (2-layer slice, forward + backward)", "",
              ("| L | impl | s | x eager | peak GiB | fwd max abs | fwd rel | grad rel | "
               "fwd rel fp32 | grad rel fp32 |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report.attention:
        if "error" in r:
            lines.append(f"| {r['length']} | {r['impl']} | {r['error']} ||||||||")
            continue
        lines.append(f"| {r['length']} | {r['impl']} | {r['seconds']:.2f} | "
                     f"{_f(r.get('speedup_vs_eager'), '.2f')} | "
                     f"{_f(r['peak_mem_gib'], '.1f')} | {_f(r.get('fwd_max_abs'))} | "
                     f"{_f(r.get('fwd_rel'))} | {_f(r.get('grad_rel_max'))} | "
                     f"{_f(r.get('fwd_rel_fp32'))} | {_f(r.get('grad_rel_fp32'))} |")
    g = report.logprob_gap
    if g:
        lines += ["", (f"logprob gap (sampler KV cache vs trainer forward, "
                       f"{g['new_tokens']} tokens after {g['prompt_tokens']}): max "
                       f"{_f(g['sampler_vs_trainer_max_abs'])}, mean "
                       f"{_f(g['sampler_vs_trainer_mean_abs'])}; trainer no-grad vs "
                       f"train-mode forward: max {_f(g['nograd_vs_trainer_max_abs'])}")]
    for s in report.skipped:
        lines.append(f"skipped: {s}")
    for e in report.errors:
        lines.append(f"error: {e}")
    return "\n".join(lines)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.dry_run:
        return Plan(dry_run=True, device="cpu", dtype="float32", attn="fused_sinks",
                    lengths=args.lengths or [64, 128], steps=args.steps or 1,
                    completion_tokens=16, compare_impls=["fused_sinks"], gap_prompt=32,
                    gap_new_tokens=8, budget_s=args.budget_s)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU (H100/H200). Use "
                         "--dry-run to check the code path on CPU.")
    return Plan(dry_run=False, device="cuda", dtype="bfloat16", attn=args.attn,
                lengths=args.lengths or [4096, 8192, 16384], steps=args.steps or 2,
                completion_tokens=1024, compare_impls=["fused_sinks", "flex_attention"],
                gap_prompt=1024, gap_new_tokens=64, budget_s=args.budget_s,
                fp32_ref_max_len=4096)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny config, CPU, float32, fused_sinks attention (seconds)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None,
                    help="tokens per sample (default 4096 8192 16384; dry run 64 128)")
    ap.add_argument("--steps", type=int, default=None,
                    help="update steps per length (default 2; dry run 1)")
    ap.add_argument("--attn", default="flex_attention",
                    help="the trainer's sink-aware attention on GPU (default flex_attention;"
                         " fused_sinks materialises a T x T mask)")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="stop starting new measurements after this many seconds")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "attention", "gap"],
                    help="sections to leave out")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)}; dry run: a "
                         f"temporary file)")
    args = ap.parse_args(argv)
    plan = make_plan(args)
    out = args.out or (Path(tempfile.mkdtemp()) / "gpt_oss_20b_dry_run.json" if plan.dry_run
                       else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    clock = Clock(plan.budget_s)
    report = Report()
    import transformers

    with torch.device("meta"):
        from transformers import GptOssForCausalLM

        params_20b = sum(p.numel() for p in GptOssForCausalLM(gpt_oss_20b_config()).parameters())
    report.meta = {
        "plan": asdict(plan), "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name() if plan.device.startswith("cuda") else None,
        "gpt_oss_20b_params": params_20b,
        "measured": "dry run (tiny model, CPU): not GPU figures" if plan.dry_run
        else "GPU run, random weights with gpt-oss-20b's architecture",
    }

    def save() -> None:
        out.write_text(json.dumps(asdict(report), indent=2, default=str), encoding="utf-8")

    clock.say(f"plan: {plan}")
    torch.manual_seed(plan.seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = None
        if "train" not in args.skip or "gap" not in args.skip:
            clock.say("building the random model (20b preset: LoRA, checkpointing)")
            trainer = build_trainer(plan, Path(tmp) / "run")
            report.meta["model_params"] = sum(p.numel() for p in trainer.model.parameters())
            report.meta["trainable_params"] = sum(p.numel() for p in trainer.model.parameters()
                                                  if p.requires_grad)
            mc = trainer.config.model
            report.meta["preset"] = {
                "attn_implementation": mc.attn_implementation,
                "gradient_checkpointing": mc.gradient_checkpointing,
                "logprob_chunk_size": mc.logprob_chunk_size, "lora_r": mc.lora_r,
                "lora_attention_modules": list(mc.lora_attention_modules),
                "lora_expert_parameters": list(mc.lora_expert_parameters),
                "microbatches": trainer.config.algo.microbatches,
                "correction": trainer.config.correction.is_level,
            }
            report.meta["model_config"] = {
                k: getattr(trainer.model.config, k, None) for k in (
                    "num_hidden_layers", "hidden_size", "num_local_experts",
                    "num_experts_per_tok", "num_attention_heads", "num_key_value_heads",
                    "head_dim", "sliding_window", "vocab_size", "_attn_implementation",
                    "_experts_implementation")}
            clock.say(f"  -> {report.meta['model_params'] / 1e9:.2f}B parameters, "
                      f"{report.meta['trainable_params'] / 1e6:.1f}M trainable (LoRA)")
        if trainer is not None and "train" not in args.skip:
            run_train(plan, trainer, report, clock)
            save()
        if trainer is not None and "gap" not in args.skip:
            try:
                run_gap(plan, trainer, report, clock)
            except Exception as e:  # noqa: BLE001 - report, keep the other sections
                report.errors.append(f"logprob gap: {type(e).__name__}: {e}")
            save()
        if trainer is not None:
            trainer.close()
            del trainer
            _reset_peak(plan.device)
        if "attention" not in args.skip:
            run_attention(plan, report, clock)
            save()
    report.meta["seconds"] = clock.elapsed()
    save()
    print(table(report), flush=True)
    clock.say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    raise SystemExit(main())
