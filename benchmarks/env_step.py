"""Env step overhead: what ``env.step`` costs on top of the sandbox call, at 1k/8k/32k tokens.

    python benchmarks/env_step.py [--quick] [--sizes 1000,8000,32000] [--steps N]
                                  [--sandbox local] [--baseline-rev REV]
                                  [--out benchmarks/results/env_step.png]

An episode is grown to each context size (one long analysis message), then the model's
``print(1)`` call (a 12-token completion, as token ids) is stepped repeatedly; every 20 steps
a new episode starts so the context stays near its size. Each step is split into:

* ``parse``: reading the completion (``HarmonyCodec.parse_completion``);
* ``tool``: the sandbox call, session IPC included (``Session.run``);
* ``render``: the tool message's tokens (``HarmonyCodec.tool_result_tokens``);
* ``copy``: building the observation array (``HarmonyEnv._obs``);
* ``other``: the rest (routing the call to its tool, the tool's own checks and output
  formatting, bookkeeping, ``info`` with every tool's entry).

Overhead is step time minus the tool call. Three paths run interleaved, in one process:
``python-tool`` (the single-tool preset: the fast parser, cached tool headers, the int32
token buffer), ``agent`` (the composed env with three tools, python, browser and developer
functions, so each call is routed among them and every ``info`` carries each tool's entry)
and ``harmony`` (the python-tool env with openai-harmony's parser and renderer and a
Python-list context, as before the fast path existed). A bare ``session.run("print(1)")``
on the same sandbox is the baseline. With ``--baseline-rev REV`` (e.g. the commit before
python-tool became a preset of the composed env) this script as it was at REV runs first,
from a temporary git worktree, with the same sizes and steps, and its python-tool overhead
is printed beside ours. Prints p50s, the ratios, and saves a plot and the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent_envs
from agent_envs.harmony import HarmonyCodec, get_codec
from agent_envs.harmony import codec as codec_module
from sandboxes import Limits, make_sandbox

CODEC = get_codec()
ACTION = CODEC.encode("<|channel|>analysis to=python code<|message|>print(1)<|call|>")
PARTS = ("parse", "tool", "render", "copy")
STEPS_PER_EPISODE = 20
TTY = sys.stdout.isatty()


def say(msg: str) -> None:
    print(msg, flush=True)


class ListTokens(list):
    """The pre-fast-path context: a Python list, converted to an array on every observation."""

    def array(self) -> np.ndarray:
        return np.asarray(self, dtype=np.int32)


class Timed:
    """Wraps the env's and codec's step parts so each call's duration is recorded."""

    def __init__(self, env: Any, path: str) -> None:
        self.env, self.path = env, path
        self.times: dict[str, float] = defaultdict(float)
        codec = env.codec
        self._wrap(codec, "parse_completion", "parse",
                   self._harmony_parse if path == "harmony" else codec.parse_completion)
        self._wrap(codec, "tool_result_tokens", "render",
                   self._harmony_render if path == "harmony" else codec.tool_result_tokens)
        self._wrap(env, "_obs", "copy", env._obs)
        sandbox = python_part(env).sandbox
        open_session = sandbox.open

        def open_timed() -> Any:
            session = open_session()
            self._wrap(session, "run", "tool", session.run)
            return session
        sandbox.open = open_timed

    def _wrap(self, obj: Any, name: str, part: str, fn: Callable[..., Any]) -> None:
        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.times[part] += time.perf_counter() - t0
        setattr(obj, name, timed)

    @staticmethod
    def _harmony_parse(tokens: Any) -> Any:
        fast, codec_module.parse_completion_fast = (codec_module.parse_completion_fast,
                                                    lambda ids, dec: None)
        try:
            return type(CODEC).parse_completion(CODEC, tokens)
        finally:
            codec_module.parse_completion_fast = fast

    @staticmethod
    def _harmony_render(tool: str, text: str, *, channel: str | None = "analysis") -> list[int]:
        msg = CODEC.tool_message(tool, text, channel=channel)
        return CODEC.render_message(msg) + list(CODEC.assistant_header)


PATHS = ("python-tool", "agent", "harmony")


def python_part(env: Any) -> Any:
    return next(p for p in env.tools if p.name == "python")


def _noop(x: int = 0) -> int:
    """Return the number.

    Args:
        x: A number.
    """
    return x


def new_env(path: str, size: int, sandbox: str) -> tuple[Any, Timed]:
    # Each env gets its own codec object so that wrapping its methods touches no other env.
    # Its own sandbox too, so that timing its sessions' calls touches no other env's.
    common = {"max_tokens": size + 50_000, "max_turns": STEPS_PER_EPISODE + 5,
              "codec": HarmonyCodec(CODEC.encoding),
              "sandbox_instance": make_sandbox(sandbox, limits=Limits())}
    if path == "agent":
        from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document

        pages = Corpus([Document(url="https://example.test/a", title="A",
                                 html="<html><body><p>A page.</p></body></html>")],
                       name="bench", fingerprint="env-step-bench")
        env = agent_envs.make("agent", tools=["python", "browser", _noop], tasks="procedural",
                              backend=CorpusBackend(pages), **common)
    else:
        env = agent_envs.make("python-tool", **common)
    return env, Timed(env, path)


def grow(env: Any, path: str, size: int, seed: int) -> None:
    obs, _ = env.reset(seed=seed)
    need = size - len(obs) - 8
    if need > 0:
        filler = CODEC.encode(" word" * need)[:need]
        env.step(CODEC.encode("<|channel|>analysis<|message|>") + filler
                 + CODEC.encode("<|end|>"))
    if path == "harmony":
        env._tokens = ListTokens(env._tokens.tolist())


def measure(size: int, steps: int, sandbox: str) -> dict[str, Any]:
    envs = {p: new_env(p, size, sandbox) for p in PATHS}
    rows: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in envs}
    bare_sandbox = make_sandbox(sandbox, limits=Limits())
    session = bare_sandbox.open()
    bare: list[float] = []
    done = 0
    seed = 0
    while done < steps:
        for path, (env, timed) in envs.items():
            grow(env, path, size, seed)
        for _ in range(STEPS_PER_EPISODE):
            for path, (env, timed) in envs.items():  # interleaved: noise hits both paths
                timed.times.clear()
                t0 = time.perf_counter()
                env.step(ACTION)
                total = time.perf_counter() - t0
                row = rows[path]
                row["step"].append(total)
                for part in PARTS:
                    row[part].append(timed.times[part])
                row["other"].append(total - sum(timed.times[p] for p in PARTS))
                row["overhead"].append(total - timed.times["tool"])
                row["context"].append(len(env._tokens))
            t0 = time.perf_counter()  # the bare call, interleaved with the steps
            session.run("print(1)")
            bare.append(time.perf_counter() - t0)
            done += 1
        seed += 1
        if TTY or done % max(steps // 4, 1) < STEPS_PER_EPISODE:
            print(("\r" if TTY else "") + f"  {size:>6} tokens: {min(done, steps)}/{steps} "
                  "steps", end="" if TTY else "\n", flush=True)
    if TTY:
        print()
    session.close()
    bare_sandbox.close()
    out: dict[str, Any] = {"size": size, "bare_ms": statistics.median(bare) * 1e3}
    for path, row in rows.items():
        out[path] = {k: statistics.median(v) * (1 if k == "context" else 1e3)
                     for k, v in row.items()}
        out[path]["overhead_p90"] = float(np.percentile(row["overhead"], 90)) * 1e3
    for env, _ in envs.values():
        env.close()
        python_part(env).sandbox.close()
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    labels, x = [], 0.0
    colors = {"parse": "#4c72b0", "tool": "#bbbbbb", "render": "#dd8452", "copy": "#55a868",
              "other": "#8172b3"}
    for r in results:
        start = x
        for p in PATHS:
            bottom = 0.0
            for part in ("tool", "parse", "render", "copy", "other"):
                v = max(r[p][part], 0.0)
                ax.bar(x, v, bottom=bottom, color=colors[part], width=0.8,
                       label=part if x == 0 else None)
                bottom += v
            labels.append((x, f"{p}\n{r['size'] // 1000}k"))
            x += 1
        ax.hlines(r["bare_ms"], start - 0.4, x - 0.6, colors="black", linestyles="dashed",
                  label="bare sandbox call" if start == 0 else None)
        x += 0.6
    ax.set_xticks([p for p, _ in labels], [lab for _, lab in labels], fontsize=7)
    ax.set_ylabel("ms per step (p50 of each part)")
    ax.set_title("env.step: python-tool preset, composed agent env (3 tools), "
                 "openai-harmony-only path")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def baseline(rev: str, sizes: list[int], steps: int, sandbox: str) -> dict[int, float]:
    """This script as it was at ``rev``, run from a temporary worktree: its python-tool
    overhead p50 (ms) by size."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(tree),
                        rev], check=True)
        try:
            out = Path(tmp) / "env_step.png"
            say(f"baseline: benchmarks/env_step.py at {rev}")
            subprocess.run([sys.executable, "benchmarks/env_step.py", "--sizes",
                            ",".join(map(str, sizes)), "--steps", str(steps), "--sandbox",
                            sandbox, "--out", str(out)], cwd=tree, check=True)
            rows = json.loads(out.with_suffix(".json").read_text())
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           check=False)
    return {int(r["size"]): float(r["ours"]["overhead"]) for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,8000,32000")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="100 steps per size")
    ap.add_argument("--sandbox", default="local")
    ap.add_argument("--baseline-rev", default=None, metavar="REV",
                    help="also run this script as it was at REV (git) and compare")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/env_step.png"))
    a = ap.parse_args()
    steps = 100 if a.quick else a.steps
    sizes = [int(s) for s in a.sizes.split(",")]
    before = baseline(a.baseline_rev, sizes, steps, a.sandbox) if a.baseline_rev else {}
    say(f"env step overhead on sandbox={a.sandbox}, {steps} steps per size, "
        f"{len(ACTION)}-token print(1) call")
    results = [measure(size, steps, a.sandbox) for size in sizes]

    say("\np50 ms        context   step   tool  parse render   copy  other | overhead (p90)"
        "  step/bare")
    for r in results:
        for p in PATHS:
            m = r[p]
            say(f"{p:<11} {int(m['context']):>8} {m['step']:6.3f} {m['tool']:6.3f} "
                f"{m['parse']:6.3f} {m['render']:6.3f} {m['copy']:6.3f} {m['other']:6.3f} | "
                f"{m['overhead']:6.3f} ({m['overhead_p90']:.3f})  {m['step'] / r['bare_ms']:5.2f}x")
        say(f"{'bare':<11} {'':>8} {r['bare_ms']:6.3f}   session.run('print(1)'), interleaved")
    say("\noverhead p50 (ms)  python-tool   agent (3 tools)   agent/python-tool   "
        "harmony-only   harmony/python-tool" + ("   python-tool at baseline rev" if before
                                                 else "") + "   target")
    targets = {8000: 0.5, 32000: 1.0}
    for r in results:
        o, c, h = (r[p]["overhead"] for p in PATHS)
        t = targets.get(r["size"])
        verdict = "" if t is None else (f"<= {t} ms " + ("met" if max(o, c) <= t else "MISSED"))
        base = f"{before[r['size']]:14.3f}" if r["size"] in before else ""
        say(f"{r['size']:>6}            {o:9.3f} {c:15.3f} {c / o:17.2f}x {h:14.3f} "
            f"{h / o:19.1f}x {base}   {verdict}")
        if r["size"] in before:
            r["baseline_python_tool_overhead"] = before[r["size"]]
    plot(results, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
