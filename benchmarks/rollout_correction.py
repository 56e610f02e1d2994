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

Two mismatch levels (``--levels``, :data:`LEVELS`): a random tiny model is nearly a bigram
model whose attention adds little to the residual stream, so ignoring the sinks barely
moves it; its LM head, sinks and attention output are scaled at init. ``mild`` gives a
per-token KL(sampler || trainer) of ~5e-3 at step 1 (the broken-kernel level: a healthy
bf16 engine is at ~1e-4..1e-3); ``gross`` ~3e-2 (bigger sinks, 3x the attention output).
Both keep the policy near uniform at init (a sharper head makes GRPO collapse it onto a
partial answer even without mismatch).

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
``token_tis`` (:data:`SWEEP`; a plain ``--sweep`` runs :data:`SWEEP_DEFAULT`, seed 0).

Cost: a 60-step run is ~30-40 CPU-seconds here (4 epochs x 8 minibatches or length 64
about 2-3x that); the defaults (66 grid runs; 15 sweep runs) are ~40 and ~15 CPU-minutes,
run ``--jobs`` at a time. On a 2-core machine shared with a dozen other jobs each run took
10 minutes of wall time.

Run::

    python benchmarks/rollout_correction.py            # the grid -> results/rollout_correction.*
    python benchmarks/rollout_correction.py --sweep    # the sweep -> results/rollout_correction_sweep.*
    python benchmarks/rollout_correction.py --steps 20 --seeds 0 --levels gross \\
        --arms none none_bypass token_tis --out /tmp/rc
    python benchmarks/rollout_correction.py --replot   # redraw the figure from the JSON (+ --sweep)

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
import dataclasses
import difflib
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.rollout_correction_mismatch import (
    AllowedRowsHead,
    SubsetSampler,
    register_sinkless_attention,
)
from benchmarks.rollout_correction_report import (
    BLOWUP,
    HEADLINE_ARMS,
    HEADLINE_PANELS,
    PANELS,
    grid_rows,
    level_title,
    markdown_tables,
    plot_grid,
    plot_sweep,
    print_grid_table,
    print_no_mismatch_check,
    print_sweep_table,
    sweep_rows,
)
from trainers.config import ConfigError, TrainConfig, config_from_dict

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
    "head gain 3": {"head_gain": 3.0},  # per-token KL at step 1 ~6e-2
    "head gain 4": {"head_gain": 4.0},  # ~1e-1
    "lr 1e-2": {"lr": 1e-2},
    "lr 3e-2": {"lr": 3e-2},
    "2 epochs x 4 mb": {"epochs": 2, "minibatches": 4},
    "4 epochs x 8 mb": {"epochs": 4, "minibatches": 8},
    "length 64": {"length": 64},
}
#: The settings a plain ``--sweep`` runs: the strongest value of each knob (what the
#: committed results hold; the 2-core machine they ran on had time for no more).
SWEEP_DEFAULT = ("base", "head gain 4", "lr 3e-2", "4 epochs x 8 mb", "length 64")
SWEEP_ARMS = ("none", "none_bypass", "token_tis")

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
    t0, c0 = time.perf_counter(), time.process_time()
    history = run_arm(spec, work, bar)
    result = {"spec": dataclasses.asdict(spec), "wall_s": time.perf_counter() - t0,
              "cpu_s": time.process_time() - c0, "history": history}
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


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS),
                   help=f"arms to run (default: all): {', '.join(ARMS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--tasks", type=int, default=8, help="tasks (start digits) per step")
    p.add_argument("--group-size", type=int, default=8, help="G, episodes per task")
    p.add_argument("--length", type=int, default=32, help="L, digits per answer")
    p.add_argument("--pattern", default="01234", help="the hidden cycle's distinct digits")
    p.add_argument("--lr", type=float, default=3e-3)
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
    p.add_argument("--sweep-settings", nargs="+", default=list(SWEEP_DEFAULT),
                   help=f"sweep settings to run (default: {'; '.join(SWEEP_DEFAULT)}): "
                        f"{'; '.join(SWEEP)}")
    p.add_argument("--sweep-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--sweep-arms", nargs="+", default=list(SWEEP_ARMS),
                   help=f"arms of the sweep (default: {', '.join(SWEEP_ARMS)}; add "
                        f"no_mismatch for a control without mismatch)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    p.add_argument("--work", type=Path, default=ROOT / "runs/bench-rollout-correction",
                   help="directory for each finished run's metrics (reused by reruns)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results",
                   help="directory for rollout_correction{,_sweep}.{png,json} (or a .png path)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the figure from the JSON in --out")
    p.add_argument("--markdown", action="store_true",
                   help="with --replot: also print the tables in Markdown (for the docs)")
    return p


def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad arguments before any compute (``p.error``: usage, the message, exit 2)."""
    for flag, arms in (("--arms", args.arms), ("--sweep-arms", args.sweep_arms)):
        for arm in arms:
            if arm not in ARMS:
                p.error(f"{flag}: unknown arm {arm!r}.{_did_you_mean(arm, list(ARMS))} "
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
            for seed in args.sweep_seeds for name in args.sweep_settings
            for arm in args.sweep_arms]


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
        # The tables from the saved curves (the current summary code, not the saved summary).
        rows_of = sweep_rows if saved["mode"] == "sweep" else grid_rows
        saved["summary"] = rows_of(hist, saved["learned_at"])
        if args.markdown:
            print(markdown_tables(saved))
        if saved["mode"] == "sweep":
            print(plot_sweep(hist, saved["trivial"]["trivial"], args.figure, saved["title"]))
        else:
            print(plot_grid(hist, saved["trivial"]["trivial"], args.figure, saved["title"],
                            saved["columns"]))
            print(plot_grid(hist, saved["trivial"]["trivial"], _headline(args.figure),
                            saved["title"], saved["columns"], panels=HEADLINE_PANELS,
                            only=HEADLINE_ARMS))
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
    cpu_s = sum(r.get("cpu_s", math.nan) for r in results.values())
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
        columns = {level: level_title(level, arms, LEVELS.get(level))
                   for level, arms in rows.items()}
        print_grid_table(rows, len(args.seeds), columns)
        print()
        print_no_mismatch_check(rows, trivial["trivial"])
        title = f"sinkless sampler vs sink-aware trainer: {setting}; seeds {args.seeds}"
        png = plot_grid(groups, trivial["trivial"], args.figure, title, columns)
        plot_grid(groups, trivial["trivial"], _headline(args.figure), title, columns,
                  panels=HEADLINE_PANELS, only=HEADLINE_ARMS)
    out_json.write_text(_compact_json({
        "mode": "sweep" if args.sweep else "grid", "setting": setting, "title": title,
        "args": {k: str(v) for k, v in vars(args).items()}, "trivial": trivial,
        "learned_at": args.learned_at, "blowup": BLOWUP, "levels": LEVELS,
        "columns": {} if args.sweep else columns,
        "compute_s": compute_s, "cpu_s": cpu_s, "summary": rows,
        "history": {g: {a: [_columns(h) for h in seeds] for a, seeds in arms.items()}
                    for g, arms in groups.items()}}))
    print(f"\nplot: {png}\nresults: {out_json}\nruns: {cpu_s:.0f} CPU-seconds, {compute_s:.0f} s "
          f"wall (sums over the {len(results)} runs, this and earlier invocations); this "
          f"invocation {time.perf_counter() - t_all:.0f} s wall with --jobs {args.jobs}")
    return 0


def _headline(figure: Path) -> Path:
    """Where the headline figure goes: ``<figure>_headline.png``."""
    return figure.with_name(f"{figure.stem}_headline.png")


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
