"""Benchmark: how far a real inference engine's log-probs are from the trainer's.

The gpt-oss agentic-RL failures came from a token-level probability mismatch between the
inference engine and the training stack. ``benchmarks/rollout_correction.py`` fakes the
engine (our own sampler with the sinks dropped); this measures a real one, llama.cpp's
``llama-server``, on the same weights:

* **contexts**: real multi-turn python-tool episodes (the scripted oracle's tool calls,
  the sandbox's results), the prompt before every assistant turn, plus the whole episode;
* **engine**: llama.cpp samples a continuation of each context at temperature 1 (one
  slot, seeded) from a GGUF of the model in each **variant**: F32 weights with an F32 KV
  cache (the floor: only kernels differ), F32 with llama.cpp's default F16 KV cache, BF16,
  Q8_0 (the converter's types) and Q4_0 / MXFP4 experts (``llama-quantize``: the published
  gpt-oss GGUFs ship MXFP4 experts). It reports each sampled token's log-prob;
* **trainer**: :func:`trainers.train.token_logprobs` (float32, eager sink-aware attention)
  recomputes every sampled token's log-prob on the original float32 weights.

Per token, ``d = logp_engine - logp_trainer``. The table gives mean/p99/max ``|d|``, the
KL(engine || trainer) per token (k3 estimator ``w - 1 - log w`` with ``w = exp(-d)``,
unbiased and >= 0, and k1 = mean ``d``), and the fraction of tokens whose importance
weight ``w`` lies outside [0.8, 1.25] (what token-level correction would clip or mask), by
variant and by context length (position of the sampled token).

The model is the trainer's tiny gpt-oss (real architecture and vocabulary, toy width). A
random LM head gives a near-uniform distribution over 201,088 tokens, which hides every
mismatch; ``--head-gain`` scales the head so the per-token entropy is closer to a trained
model's (the table prints it).

Run (needs ``bash scripts/build_llama_server.sh``)::

    python benchmarks/engine_mismatch.py                    # all variants, ~15 min on 2 cores
    python benchmarks/engine_mismatch.py --variants f32-kv32 bf16 --episodes 2
    python benchmarks/engine_mismatch.py --resume           # finish an interrupted run
    python benchmarks/engine_mismatch.py --merge a.json b.json  # variants run in parallel

It prints the tables and saves ``benchmarks/results/engine_mismatch.png`` (|d| and KL over
context length, one line per variant) and ``engine_mismatch.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

import itertools

import numpy as np
import torch

#: variant -> (GGUF type, KV cache type)
VARIANTS: dict[str, tuple[str, str]] = {
    "f32-kv32": ("f32", "f32"),
    "f32": ("f32", "f16"),
    "bf16": ("bf16", "f16"),
    "q8_0": ("q8_0", "f16"),
    "q4_0": ("q4_0", "f16"),
    "mxfp4_moe": ("mxfp4_moe", "f16"),
}
BINS = (0, 256, 512, 1024, 2048, 4096, 8192)


@dataclass
class Tokens:
    """The sampled tokens of one variant: positions, engine and trainer log-probs."""

    pos: list[int]
    engine: list[float]
    trainer: list[float]
    entropy: list[float]


def python_tool_contexts(episodes: int, seed: int) -> list[tuple[list[int], bool]]:
    """The prompt before every assistant turn of oracle python-tool episodes (False), and
    each episode's full token sequence (True: its longest context)."""
    import agent_envs
    from agent_envs.oracle import Oracle

    out: list[tuple[list[int], bool]] = []
    for i in range(episodes):
        env = agent_envs.make("python-tool", difficulty=1 + i % 5)
        try:
            obs, _ = env.reset(seed=seed + i)
            oracle, done, last = Oracle(), False, list(obs)
            while not done:
                out.append((list(obs), False))
                action = oracle.act(obs, env.task)
                last = list(obs) + list(action)
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
            out.append((last, True))
        finally:
            env.close()
    return out


def build_model(head_gain: float, seed: int) -> Any:
    """The trainer's tiny gpt-oss with its LM head scaled by ``head_gain``."""
    from trainers.config import TrainConfig, config_from_dict, config_to_dict
    from trainers.train import build_model as trainer_model

    cfg = config_to_dict(TrainConfig())
    cfg["model"]["init_seed"] = seed
    model = trainer_model(config_from_dict(cfg)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_gain)
    return model


def trainer_logprobs(model: Any, ids: list[int], start: int) -> tuple[list[float], list[float]]:
    """The trainer's log-probs (and entropies) of ``ids[start:]`` given what precedes them."""
    from trainers.train import token_logprobs

    t = torch.tensor([ids])
    with torch.no_grad():
        logp, ent, _ = token_logprobs(model, t, torch.ones_like(t), with_entropy=True)
    return logp[0, start:].tolist(), ent[0, start:].tolist()


def run_variant(name: str, model: Any, contexts: list[tuple[list[int], bool]],
                args: argparse.Namespace, work: Path) -> tuple[Tokens, dict[str, Any]]:
    """Serve ``model`` as ``name``, sample every context, recompute with the trainer."""
    from agent_envs.rollout.errors import PolicyError
    from agent_envs.rollout.policy import SampleRequest, SamplingParams
    from trainers.export.gguf_weights import read_layout
    from trainers.policies.llamacpp import LlamaCppPolicy

    outtype, kv = VARIANTS[name]
    t0 = time.perf_counter()
    policy = LlamaCppPolicy.for_model(model, outtype=outtype, kv_cache_type=kv, slots=1,
                                      ctx_size=args.ctx, threads=args.threads,
                                      work_dir=work / name)
    try:
        served = policy._pushed
        assert served is not None
        _, layout = read_layout(served)
        kinds: dict[str, int] = {}
        for slot in layout.values():
            kinds[slot.qtype.name] = kinds.get(slot.qtype.name, 0) + 1
        info: dict[str, Any] = {"variant": name, "weights": outtype, "kv_cache": kv,
                                "gguf_mib": served.stat().st_size / 2**20,
                                "tensor_types": kinds}
        toks = Tokens([], [], [], [])
        t_sample = 0.0
        for i, (ctx, whole) in enumerate(contexts):
            n = min(args.tail_tokens if whole else args.turn_tokens, args.ctx - len(ctx) - 1)
            if n < 1:
                continue
            t1 = time.perf_counter()
            try:
                (s,) = policy.sample([SampleRequest(prompt=ctx, max_tokens=n,
                                                    params=SamplingParams(seed=args.seed + i))])
                s.raise_for_error()
            except PolicyError as exc:  # e.g. a position whose log-prob could not be had
                info.setdefault("contexts_failed", []).append(
                    {"context": i, "tokens": len(ctx), "error": str(exc)})
                print(f"  {name}: context {i + 1}/{len(contexts)} failed: {exc}",
                      file=sys.stderr, flush=True)
                continue
            finally:
                t_sample += time.perf_counter() - t1
            ref, ent = trainer_logprobs(model, ctx + s.token_ids, len(ctx))
            toks.pos += list(range(len(ctx), len(ctx) + len(s.token_ids)))
            toks.engine += s.logprobs
            toks.trainer += ref
            toks.entropy += ent
            print(f"  {name}: context {i + 1}/{len(contexts)} ({len(ctx)} tokens): sampled "
                  f"{len(s.token_ids)}", file=sys.stderr, flush=True)
        info["engine_tokens_per_s"] = len(toks.pos) / max(t_sample, 1e-9)
        info["seconds"] = time.perf_counter() - t0
    finally:
        policy.close()
    return toks, info


def stats(engine: np.ndarray, trainer: np.ndarray, entropy: np.ndarray) -> dict[str, float]:
    """Mismatch statistics of a set of sampled tokens."""
    if engine.size == 0:
        return {"tokens": 0}
    d = engine - trainer
    w = np.exp(-d)  # pi_trainer / pi_engine on tokens the engine sampled
    return {
        "tokens": int(d.size),
        "entropy": float(entropy.mean()),
        "mean_abs": float(np.abs(d).mean()),
        "p99_abs": float(np.quantile(np.abs(d), 0.99)),
        "max_abs": float(np.abs(d).max()),
        "kl_k3": float((w - 1 - np.log(w)).mean()),
        "kl_k1": float(d.mean()),
        "w_outside": float(((w < 0.8) | (w > 1.25)).mean()),
    }


def summarize(toks: Tokens) -> dict[str, Any]:
    """Overall and per-context-length statistics."""
    pos, e, t, h = (np.asarray(x, dtype=np.float64) for x in
                    (toks.pos, toks.engine, toks.trainer, toks.entropy))
    per_bin = []
    for lo, hi in itertools.pairwise(BINS):
        m = (pos >= lo) & (pos < hi)
        if m.any():
            per_bin.append({"lo": lo, "hi": hi, **stats(e[m], t[m], h[m])})
    return {"overall": stats(e, t, h), "bins": per_bin}


def print_tables(rows: list[dict[str, Any]]) -> None:
    """The overall table and the KL-by-context-length table."""
    print("\nllama.cpp (engine) vs trainer recomputation, per sampled token "
          "(d = logp_engine - logp_trainer)")
    head = (f"{'variant':<10} {'weights':<9} {'KV':<4} {'MiB':>6} {'tokens':>6} "
            f"{'entropy':>7} {'mean|d|':>9} {'p99|d|':>9} {'max|d|':>9} {'KL k3':>9} "
            f"{'KL k1':>9} {'w out':>7} {'tok/s':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        o = r["overall"]
        print(f"{r['variant']:<10} {r['weights']:<9} {r['kv_cache']:<4} {r['gguf_mib']:>6.1f} "
              f"{o['tokens']:>6} {o['entropy']:>7.2f} {o['mean_abs']:>9.2e} "
              f"{o['p99_abs']:>9.2e} {o['max_abs']:>9.2e} {o['kl_k3']:>9.2e} "
              f"{o['kl_k1']:>9.1e} {o['w_outside']:>7.2%} {r['engine_tokens_per_s']:>6.0f}")
    for r in rows:
        for f in r.get("contexts_failed", []):
            print(f"{r['variant']}: context {f['context'] + 1} ({f['tokens']} tokens) left out: "
                  f"{f['error']}")
    print("\nKL(engine || trainer) per token (k3) by context length (tokens before the "
          "sampled one)")
    spans = [(lo, hi) for lo, hi in itertools.pairwise(BINS)
             if any(b["lo"] == lo for r in rows for b in r["bins"])]
    print(f"{'variant':<10} " + " ".join(f"{f'{lo}-{hi}':>11}" for lo, hi in spans))
    for r in rows:
        by = {b["lo"]: b for b in r["bins"]}
        cells = [f"{by[lo]['kl_k3']:>11.2e}" if lo in by else f"{'-':>11}" for lo, _ in spans]
        print(f"{r['variant']:<10} " + " ".join(cells))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """|d| and KL over context length, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("mean_abs", "mean |logp_engine - logp_trainer|"),
              ("kl_k3", "KL(engine || trainer) per token (k3)"),
              ("w_outside", "tokens with w outside [0.8, 1.25]"))
    for ax, (key, label) in zip(axes, panels):
        for r in rows:
            x = [math.sqrt(b["lo"] * b["hi"]) if b["lo"] else b["hi"] / 2 for b in r["bins"]]
            y = [max(b[key], 1e-12) for b in r["bins"]]
            ax.plot(x, y, marker="o", label=r["variant"])
        ax.set_xscale("log")
        if key != "w_outside":
            ax.set_yscale("log")
        ax.set_xlabel("context length at the sampled token")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--episodes", type=int, default=4, help="oracle python-tool episodes")
    ap.add_argument("--turn-tokens", type=int, default=64,
                    help="tokens sampled after each turn's prompt")
    ap.add_argument("--tail-tokens", type=int, default=1536,
                    help="tokens sampled after each whole episode (the long contexts)")
    ap.add_argument("--head-gain", type=float, default=32.0,
                    help="LM head scale of the random tiny model (sharper distributions)")
    ap.add_argument("--ctx", type=int, default=4096, help="llama.cpp context per slot")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "engine_mismatch.png"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the variants already in the JSON next to --out (measured with "
                         "the same settings), run the rest")
    ap.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                    help="also keep the variants of these results files (variants run in "
                         "parallel with their own --out, same settings); implies --resume")
    args = ap.parse_args(argv)

    import tempfile

    t0 = time.perf_counter()
    model = build_model(args.head_gain, args.seed)
    contexts = python_tool_contexts(args.episodes, args.seed)
    lengths = [len(c) for c, _ in contexts]
    print(f"{len(contexts)} contexts from {args.episodes} oracle python-tool episodes "
          f"({min(lengths)}..{max(lengths)} tokens)", file=sys.stderr)
    out = Path(args.out)
    same = ("episodes", "turn_tokens", "tail_tokens", "head_gain", "ctx", "seed")
    done: dict[str, dict[str, Any]] = {}
    saved = [out.with_suffix(".json")] if args.resume or args.merge else []
    for path in [p for p in saved if p.is_file()] + [Path(m) for m in args.merge]:
        old = json.loads(path.read_text())
        if all(old["meta"]["args"].get(k) == getattr(args, k) for k in same):
            done.update({r["variant"]: r for r in old["rows"]})
        else:
            print(f"{path}: measured with other settings ({', '.join(same)}); not kept",
                  file=sys.stderr)
    rows = []
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="engine-mismatch-") as tmp:
        for name in args.variants:
            if name in done:
                print(f"variant {name}: kept from the saved run", file=sys.stderr)
                rows.append(done[name])
                continue
            print(f"variant {name}", file=sys.stderr, flush=True)
            try:
                toks, info = run_variant(name, model, contexts, args, Path(tmp))
            except Exception as exc:  # noqa: BLE001  (one variant failing keeps the others)
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"variant {name} FAILED: {failed[name]}", file=sys.stderr, flush=True)
                continue
            rows.append({**info, **summarize(toks)})
            partial = {"args": vars(args), "contexts": lengths, "partial": True}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps({"meta": partial, "rows": rows},
                                                           indent=2))
    print_tables(rows)
    for name, why in failed.items():
        print(f"{name}: failed ({why})")
    title = (f"llama.cpp vs trainer on tiny gpt-oss (head gain {args.head_gain:g}), "
             f"{args.episodes} oracle python-tool episodes")
    plot(rows, out, title)
    meta = {"args": vars(args), "contexts": lengths, "failed": failed,
            "seconds": time.perf_counter() - t0, "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nplot: {out}  data: {out.with_suffix('.json')}  "
          f"({time.perf_counter() - t0:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
