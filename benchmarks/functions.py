"""Functions env step overhead: a validated call through ``env.step`` vs a bare Python call.

    python benchmarks/functions.py [--quick] [--steps N] [--out benchmarks/results/functions.png]

One small developer function (``get_weather(city, unit="celsius") -> dict``) is called with
the same arguments over and over, interleaved, in one process:

* ``bare``: ``fn(**json.loads(args))``, what TRL/verifiers/tau2 do (no validation);
* ``runner``: our call path without harmony: JSON parse, name lookup, strict schema
  validation (jsonschema), pydantic conversion, the call, deterministic serialisation;
* ``step``: the whole ``env.step`` on the completion's token ids (parse the harmony
  completion, the runner, render the tool message, build the observation), in three
  settings: strict validation with the call in the env's thread (``call_timeout_s=None``),
  strict with the default per-call time limit (the call runs in a worker thread), and
  validation off.

Every 20 steps a new episode starts, so contexts stay short (~300 tokens). Prints p50/p90
per path and the ratios to the bare call, and saves a plot and the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.core import ToolCall
from agent_envs.envs.functions import CallsTask, FunctionsEnv, tool
from agent_envs.envs.functions.runtime import FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tasks import TaskList
from agent_envs.envs.functions.tools import ToolSet
from agent_envs.harmony import get_codec

ARGS = '{"city": "Oslo", "unit": "fahrenheit"}'
STEPS_PER_EPISODE = 20


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Current weather in a city.

    Args:
        city: City name.
        unit: Temperature unit.
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit}


def say(msg: str) -> None:
    print(msg, flush=True)


def make_env(**kw: Any) -> FunctionsEnv:
    task = CallsTask(id="bench", prompt="What is the weather in Oslo, in fahrenheit?",
                     answer="70", answer_kind="int")
    return FunctionsEnv(tools=[get_weather], tasks=TaskList("bench", [task], origin="bench"),
                        split="train", max_turns=10_000, **kw)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(steps: int) -> dict[str, Any]:
    codec = get_codec()
    action = codec.encode("<|channel|>commentary to=functions.get_weather <|constrain|>json"
                          f"<|message|>{ARGS}<|call|>")
    envs = {"step strict, in-thread": make_env(call_timeout_s=None),
            "step strict, time limit": make_env(),
            "step validation off": make_env(call_timeout_s=None, validation="off")}
    for e in envs.values():
        e.reset(seed=0)
    runner = FunctionRunner(ToolSet([tool(get_weather)]), RunnerConfig(call_timeout_s=None))
    call = ToolCall(recipient="functions.get_weather", channel="commentary",
                    content_type="<|constrain|>json", text=ARGS)
    times: dict[str, list[float]] = {"bare": [], "runner": [], **{k: [] for k in envs}}
    check = runner.run(call)
    assert check.ok and check.value == get_weather(**json.loads(ARGS)), check
    pc = time.perf_counter
    progress_every = max(1, steps // 10)
    for i in range(steps):
        t0 = pc()
        get_weather(**json.loads(ARGS))
        times["bare"].append(pc() - t0)
        t0 = pc()
        runner.run(call)
        times["runner"].append(pc() - t0)
        for name, env in envs.items():
            t0 = pc()
            _, _, term, trunc, info = env.step(action)
            times[name].append(pc() - t0)
            assert info["tool_outcome"]["ok"], info
            if (i + 1) % STEPS_PER_EPISODE == 0 or term or trunc:
                env.reset(seed=0)
        if (i + 1) % progress_every == 0:
            say(f"  {i + 1}/{steps} steps")
    out: dict[str, Any] = {"steps": steps}
    for name, xs in times.items():
        ms = [x * 1e3 for x in xs]
        out[name] = {"p50_ms": statistics.median(ms), "p90_ms": pct(ms, 0.9),
                     "mean_ms": statistics.fmean(ms)}
    return out


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in res if k != "steps"]
    fig, ax = plt.subplots(figsize=(8, 4))
    p50 = [res[n]["p50_ms"] * 1e3 for n in names]
    p90 = [res[n]["p90_ms"] * 1e3 for n in names]
    ax.barh(names, p90, color="#cccccc", label="p90")
    ax.barh(names, p50, color="#4c72b0", label="p50")
    for y, v in enumerate(p50):
        ax.text(v, y, f" {v:.0f} us ({v / p50[0]:.0f}x bare)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per call (log)")
    ax.set_title("functions: validated call through env.step vs bare fn(**json.loads(args))")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="300 steps")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/functions.png"))
    a = ap.parse_args()
    steps = 300 if a.quick else a.steps
    say(f"functions env: {steps} interleaved calls of get_weather({ARGS})")
    res = measure(steps)
    bare = res["bare"]["p50_ms"]
    say(f"\n{'path':<26} {'p50 us':>9} {'p90 us':>9} {'x bare':>8} {'overhead us':>12}")
    for name in [k for k in res if k != "steps"]:
        m = res[name]
        say(f"{name:<26} {m['p50_ms'] * 1e3:9.1f} {m['p90_ms'] * 1e3:9.1f} "
            f"{m['p50_ms'] / bare:8.1f} {(m['p50_ms'] - bare) * 1e3:12.1f}")
    plot(res, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
