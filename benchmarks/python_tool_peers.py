"""Python-tool benchmark: our env step against GEM's and OpenAI's reference python tools.

    python benchmarks/python_tool_peers.py [--quick | --reps N] [--skip-install]
        [--only ours:local,gem,...] [--workdir benchmarks/results/peers_work]
        [--out benchmarks/results/python_tool_peers.png]

Contestants, all driven the same way and interleaved round-robin in one run (so machine
noise hits all of them alike):

* ours: ``agent_envs.make("python-tool", sandbox=B, call_timeout_s=2)`` on every available
  sandbox backend B; one call is ``env.step(ids)`` with the sampled completion
  ``<|channel|>analysis to=python code<|message|>CODE<|call|>`` as token ids, so the time
  covers parsing the completion, running the cell and rendering the tool message.
* GEM (PyPI ``gem-llm``): ``PythonCodeTool(timeout=2, sandbox_type=...).execute_action(
  "<python>CODE</python>")``, as GEM's ``ToolEnvWrapper.step`` calls it; ``sandbox_type``
  ``none`` and ``bwrap``.
* OpenAI's gpt-oss reference tool (PyPI ``gpt-oss``): ``PythonTool(execution_backend=
  "dangerously_use_local_jupyter", local_jupyter_timeout=2)``, fed a harmony ``Message``
  (assistant, channel analysis, recipient python) through ``async for m in tool.process(msg)``.

Each peer is installed into its own venv under ``--workdir`` (once; later runs reuse it,
``--skip-install`` never installs) and driven by a small worker process (``worker.py`` in
the work directory, line-delimited JSON on stdin/stdout). Every contestant, ours included,
runs in such a worker, and the headline time is measured inside it around the call alone;
the driver's round trip is reported beside it.

Cells: ``print(1)`` (p50/p90 of the steady-state call; every 12 calls a new episode starts,
and its start, reset plus first call, is reported on its own), ``x=1`` then ``print(x)``
(does state persist?) and ``while True: pass`` with a 2 s timeout (did the call come back
within 2 s + slack saying it timed out, and does ``print(2)`` work after it?). Prints a
table, saves the numbers as JSON and a log-scale bar plot. A peer that cannot be installed
or run is reported as unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandboxes import available_backends

TIMEOUT_S = 2.0
SLACK_S = 1.0
EPISODE_CALLS = 12
# What each peer's python tool needs; a change rebuilds its venv. GEM: gem-llm --no-deps (its
# extras pull in torch) plus its tool's import path, and numpy/pandas, which it imports when
# it re-runs a cell that failed with a NameError. gpt-oss: its python tool's imports.
PEER_PINS = {"gem": ["gem-llm==0.1.0", "numpy", "regex", "reasoning-gym==0.1.23", "pandas"],
             "gpt-oss": ["gpt-oss==0.0.9", "openai-harmony", "docker", "jupyter_client",
                         "ipykernel"]}

WORKER_SRC = r'''
"""Runs one python-tool contestant; JSON lines in, JSON lines out (written by
benchmarks/python_tool_peers.py)."""
import asyncio, json, os, sys, time


class Ours:
    def __init__(self, backend, timeout):
        import agent_envs
        # The driver decides when an episode ends (a reset every few calls), not the budgets.
        self.env = agent_envs.make("python-tool", sandbox=backend, call_timeout_s=timeout,
                                   max_turns=100_000, max_tokens=10_000_000)
        self.env.reset(seed=0)

    def call(self, code):
        ids = self.env.codec.encode(f"<|channel|>analysis to=python code<|message|>{code}<|call|>")
        t0 = time.perf_counter()
        obs, _, terminated, truncated, info = self.env.step(ids)
        ms = (time.perf_counter() - t0) * 1000
        if terminated or truncated:  # an infra fault: say why, and go on in a new episode
            print(f"episode ended: {info['truncated_reason']} {info['infra_error']}",
                  file=sys.stderr, flush=True)
            self.env.reset(seed=0)
        tail = self.env.codec.decode(obs[-info["env_token_count"]:])
        text = tail.split("<|message|>", 1)[-1].split("<|end|>", 1)[0]
        return ms, text, bool((info.get("tool_outcome") or {}).get("timed_out"))

    def reset(self):
        self.env.reset(seed=0)

    def close(self):
        self.env.close()


class Gem:
    def __init__(self, timeout, sandbox_type):
        from gem.tools.python_code_tool import PythonCodeTool
        self.tool = PythonCodeTool(timeout=int(timeout), sandbox_type=sandbox_type)

    def call(self, code):
        t0 = time.perf_counter()
        _valid, _error, obs, _ = self.tool.execute_action(f"<python>{code}</python>")
        ms = (time.perf_counter() - t0) * 1000
        return ms, obs, "timed out" in obs

    def reset(self):  # stateless: every call is a new `python -c`
        pass

    close = reset


class GptOss:
    def __init__(self, timeout):
        from gpt_oss.tools.python_docker.docker_tool import PythonTool
        from openai_harmony import Message, Role
        self.make = lambda: PythonTool(execution_backend="dangerously_use_local_jupyter",
                                       local_jupyter_timeout=timeout)
        self.msg = lambda code: (Message.from_role_and_content(Role.ASSISTANT, code)
                                 .with_channel("analysis").with_recipient("python"))
        self.loop = asyncio.new_event_loop()
        self.tool = self.make()

    async def _run(self, msg):
        return [m async for m in self.tool.process(msg)]

    def call(self, code):
        msg = self.msg(code)
        t0 = time.perf_counter()
        replies = self.loop.run_until_complete(self._run(msg))
        ms = (time.perf_counter() - t0) * 1000
        text = "".join(c.text for m in replies for c in m.content)
        return ms, text, "Timed out" in text

    def reset(self):  # the tool has no reset: a new episode gets a new tool (kernel)
        self.tool.close()
        self.tool = self.make()

    def close(self):
        self.tool.close()


def main():
    proto = os.fdopen(os.dup(1), "w")  # keep the protocol away from anything tools print
    os.dup2(2, 1)
    send = lambda **kw: (proto.write(json.dumps(kw) + "\n"), proto.flush())
    t0 = time.perf_counter()
    try:
        tool = {"ours": Ours, "gem": Gem, "gpt-oss": GptOss}[sys.argv[1]](**json.loads(sys.argv[2]))
    except BaseException as e:
        send(error=f"{type(e).__name__}: {e}")
        return
    send(ready=True, ms=(time.perf_counter() - t0) * 1000)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "call":
            ms, out, timed_out = tool.call(req["code"])
            send(ms=ms, out=out, timed_out=timed_out)
        elif req["op"] == "reset":
            t0 = time.perf_counter()
            tool.reset()
            send(ms=(time.perf_counter() - t0) * 1000)
        else:
            tool.close()
            send(closed=True)
            return


main()
'''


class Unavailable(Exception):
    """A contestant that cannot be installed or run (the message says why)."""


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def printed(out: str, value: str) -> bool:
    """Whether the tool output's last line shows ``value`` (GEM prefixes "...result: ")."""
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    return bool(lines) and lines[-1].rsplit(": ", 1)[-1] == value


# -- peer venvs ----------------------------------------------------------------------

def pip(py: Path, *args: str) -> None:
    r = subprocess.run([str(py), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                       capture_output=True, text=True, timeout=1800, check=False)
    if r.returncode != 0:
        tail = [ln for ln in r.stderr.splitlines() if ln.strip() and "Location" not in ln]
        raise Unavailable(f"pip {args[0]} failed: {(tail or ['?'])[-1][:200]}")


def ensure_venv(workdir: Path, name: str, skip_install: bool) -> Path:
    """The python of the peer's venv, built once (a marker file says it is complete)."""
    venv = workdir / f"venv-{name}"
    py = venv / "bin" / "python"
    marker = venv / ".installed"
    pins = PEER_PINS[name]
    if marker.exists() and marker.read_text().split() == pins:
        return py
    if skip_install:
        raise Unavailable(f"not installed in {venv} (run without --skip-install)")
    say(f"[install] {name}: creating {venv} ...")
    shutil.rmtree(venv, ignore_errors=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
    if name == "gem":
        pip(py, "install", "--no-deps", pins[0])
        pip(py, "install", *pins[1:])
        module = "gem.tools.python_code_tool"
    else:  # gpt-oss declares Python >= 3.12; its python tool runs on 3.11
        wheels = workdir / "wheels"
        pip(py, "download", "--no-deps", "--python-version", "3.12", "--only-binary=:all:",
            pins[0], "-d", str(wheels))
        version = pins[0].split("==")[1]
        pip(py, "install", "--no-deps", "--ignore-requires-python",
            str(next(wheels.glob(f"gpt_oss-{version}-*.whl"))))
        pip(py, "install", *pins[1:])
        module = "gpt_oss.tools.python_docker.docker_tool"
    check = (f"import importlib.util, {module}; "
             "assert importlib.util.find_spec('torch') is None, 'torch got installed'")
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise Unavailable(f"import check failed: {r.stderr.strip().splitlines()[-1][:200]}")
    marker.write_text(" ".join(pins) + "\n")
    return py


# -- workers -------------------------------------------------------------------------

class Worker:
    """One contestant in its own process; ``ask`` sends a request and waits for the reply."""

    def __init__(self, name: str, py: Path, kind: str, kwargs: dict[str, Any],
                 workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = open(workdir / f"{name.replace(':', '-')}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(py), str(workdir / "worker.py"), kind, json.dumps(kwargs)], env=env,
            cwd=workdir / "scratch", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, bufsize=1)
        self.replies: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._get(300)
        if "error" in ready:
            self.close()
            raise Unavailable(f"failed to start: {ready['error'][:200]}")
        self.start_ms = ready["ms"]

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.replies.put(line)
        self.replies.put("")

    def _get(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            raise Unavailable(f"no reply within {timeout_s:g} s") from None
        if not line:
            rc = self.proc.wait()
            self.log.flush()
            tail = Path(self.log.name).read_text(errors="replace").strip().splitlines()
            raise Unavailable(f"worker exited (rc {rc}): {(tail or ['?'])[-1][:200]} "
                              f"(log: {self.log.name})")
        return json.loads(line)

    def ask(self, op: str, code: str = "", timeout_s: float = 120) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"op": op, "code": code}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        reply = self._get(timeout_s)
        reply["rt_ms"] = (time.perf_counter() - t0) * 1000
        return reply

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask("close", timeout_s=10)
            self.proc.wait(timeout=30)
        except (Unavailable, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def contestants(workdir: Path, skip_install: bool,
                only: set[str]) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    """(name, python, worker kind, kwargs, env) for each contestant (all, or those in
    ``only``), and the unavailable ones with the reason."""
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    vocab = ROOT.parent / "shared" / "vocab"
    ours_env = {**base_env, "PYTHONPATH": str(ROOT)}
    if "TIKTOKEN_ENCODINGS_BASE" not in ours_env and vocab.is_dir():
        ours_env["TIKTOKEN_ENCODINGS_BASE"] = str(vocab)
    out: list[tuple[Any, ...]] = []
    missing: dict[str, str] = {}
    for backend, reason in available_backends().items():
        if only and f"ours:{backend}" not in only:
            continue
        if reason is not None:
            missing[f"ours:{backend}"] = reason
        else:
            out.append((f"ours:{backend}", Path(sys.executable), "ours",
                        {"backend": backend, "timeout": TIMEOUT_S}, ours_env))
    peers = [("gem", "gem", "gem", {"timeout": TIMEOUT_S, "sandbox_type": "none"}),
             ("gem:bwrap", "gem", "gem", {"timeout": TIMEOUT_S, "sandbox_type": "bwrap"}),
             ("gpt-oss:jupyter", "gpt-oss", "gpt-oss", {"timeout": TIMEOUT_S})]
    built: dict[str, Path | Unavailable] = {}
    for name, venv, kind, kwargs in [p for p in peers if not only or p[0] in only]:
        if venv not in built:
            try:
                built[venv] = ensure_venv(workdir, venv, skip_install)
            except (Unavailable, OSError, subprocess.SubprocessError) as e:
                built[venv] = e if isinstance(e, Unavailable) else Unavailable(str(e))
        py = built[venv]
        if isinstance(py, Unavailable):
            missing[name] = str(py)
            continue
        env = {**base_env, "VIRTUAL_ENV": str(py.parent.parent),
               "PATH": f"{py.parent}{os.pathsep}{base_env.get('PATH', '')}",
               "JUPYTER_RUNTIME_DIR": str(workdir / "jupyter-runtime")}
        out.append((name, py, kind, kwargs, env))
    return out, missing


# -- the run -------------------------------------------------------------------------

def run(workers: list[Worker], reps: int, timeout_reps: int,
        missing: dict[str, str]) -> dict[str, dict[str, Any]]:
    res: dict[str, dict[str, Any]] = {w.name: {"calls": [], "rt": [], "episode": [],
                                               "timeouts": []} for w in workers}
    live = list(workers)

    def guard(fn: Any, w: Worker, *args: Any) -> None:  # a contestant that breaks drops out
        if w not in live:
            return
        try:
            fn(w, *args)
        except (Unavailable, OSError, KeyError, ValueError) as e:
            missing[w.name] = str(e) if isinstance(e, Unavailable) else f"{type(e).__name__}: {e}"
            live.remove(w)
            w.close()

    def warm_up(w: Worker) -> None:
        outs = [w.ask("call", "print(1)")["out"] for _ in range(3)]
        if not printed(outs[-1], "1"):
            raise Unavailable(f"print(1) returned {outs[-1].strip()[-160:]!r}")

    def state(w: Worker) -> None:
        w.ask("reset")
        first, second = w.ask("call", "x=1"), w.ask("call", "print(x)")
        res[w.name]["state"] = printed(second["out"], "1")
        res[w.name]["state ms"] = [first["ms"], second["ms"]]
        res[w.name]["state out"] = second["out"].strip()[-160:]

    def call(w: Worker, rep: int) -> None:
        r = res[w.name]
        reset_ms = w.ask("reset")["ms"] if rep % EPISODE_CALLS == 0 else None
        reply = w.ask("call", "print(1)")
        if not printed(reply["out"], "1"):
            raise Unavailable(f"print(1) returned {reply['out'].strip()[-160:]!r}")
        if reset_ms is None:
            r["calls"].append(reply["ms"])
            r["rt"].append(reply["rt_ms"])
        else:
            r["episode"].append(reset_ms + reply["ms"])

    def timeout(w: Worker) -> None:
        w.ask("reset")
        loop = w.ask("call", "while True: pass")
        after = w.ask("call", "print(2)")
        res[w.name]["timeouts"].append({
            "s": loop["ms"] / 1000, "said": loop["timed_out"], "after ok": printed(after["out"], "2"),
            "after ms": after["ms"], "after out": after["out"].strip()[-160:]})
        w.ask("reset")  # clean up: gpt-oss's kernel is still looping, for one

    say("[warm-up] three print(1) calls each, checking the output")
    for w in list(live):
        guard(warm_up, w)
    say("[state] x=1, then print(x)")
    for w in list(live):
        guard(state, w)
        if w in live:
            say(f"  {w.name:16} persists: {res[w.name]['state']}  ({res[w.name]['state out']!r})")
    step = max(1, reps // 10)
    for rep in range(reps):
        if not live:
            break
        for w in live[rep % len(live):] + live[:rep % len(live)]:
            guard(call, w, rep)
        if (rep + 1) % step == 0:
            say(f"[print(1)] rep {rep + 1}/{reps}: " + ", ".join(
                f"{w.name} {statistics.median(res[w.name]['calls']):.2f} ms"
                for w in live if res[w.name]["calls"]))
    for k in range(timeout_reps if live else 0):
        say(f"[timeout] while True: pass, timeout {TIMEOUT_S:g} s, round {k + 1}/{timeout_reps}")
        for w in live[k % len(live):] + live[:k % len(live)]:
            guard(timeout, w)
            if w in live:
                t = res[w.name]["timeouts"][-1]
                say(f"  {w.name:16} {t['s']:6.2f} s, said timed out: {t['said']}, "
                    f"print(2) after: {t['after ok']} ({t['after out']!r})")
    return {w.name: res[w.name] for w in live}


def summarize(res: dict[str, dict[str, Any]], starts: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in res.items():
        ts = r["timeouts"]
        held = [t["said"] and t["s"] <= TIMEOUT_S + SLACK_S and t["after ok"] for t in ts]
        out[name] = {
            "print1 p50 ms": statistics.median(r["calls"]), "print1 p90 ms": pct(r["calls"], 0.9),
            "n": len(r["calls"]), "round trip p50 ms": statistics.median(r["rt"]),
            "new episode p50 ms": statistics.median(r["episode"]) if r["episode"] else None,
            "worker start ms": starts[name], "state persists": r["state"],
            "state output": r["state out"], "state calls ms": r["state ms"], "timeout held": bool(ts) and all(held),
            "timeout call max s": max((t["s"] for t in ts), default=None), "timeouts": ts}
    return out


def report(summary: dict[str, Any], missing: dict[str, str]) -> list[str]:
    ours = [n for n in summary if n.startswith("ours:")]
    ref_name = "ours:local" if "ours:local" in summary else (ours or [None])[0]
    ref = summary[ref_name]["print1 p50 ms"] if ref_name else float("nan")
    head = (f"{'contestant':17}{'p50 ms':>9}{'p90 ms':>9}{'vs ours':>9}{'rt p50':>9}"
            f"{'episode':>9}  {'state':6} timeout ({TIMEOUT_S:g} s)")
    lines = [head]
    for name, s in summary.items():
        ts = s["timeouts"]
        tmo = "not measured" if not ts else (
            f"{'held' if s['timeout held'] else 'NOT held'}: {s['timeout call max s']:.2f} s, "
            f"{'said so' if all(t['said'] for t in ts) else 'silent'}, "
            f"{'usable after' if all(t['after ok'] for t in ts) else 'UNUSABLE after'}")
        ep = s["new episode p50 ms"]
        lines.append(f"{name:17}{s['print1 p50 ms']:9.2f}{s['print1 p90 ms']:9.2f}"
                     f"{s['print1 p50 ms'] / ref:8.1f}x{s['round trip p50 ms']:9.2f}"
                     f"{ep if ep is not None else float('nan'):9.1f}  "
                     f"{'yes' if s['state persists'] else 'NO':6} {tmo}")
    for name, why in missing.items():
        lines.append(f"{name:17}unavailable: {why}")
    lines.insert(1, "-" * max(len(ln) for ln in lines[:1 + len(summary)]))
    lines.append(f"\np50/p90: print(1) call timed inside the contestant's process (ours: "
                 f"env.step); vs ours: p50 / {ref_name} p50;")
    lines.append(f"rt p50: the driver's round trip; episode: a new episode's start "
                 f"(reset + first call), every {EPISODE_CALLS} calls.")
    return lines


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(names)), 5))
    for off, key, color, label in ((-0.2, "print1 p50 ms", "tab:green", "print(1) call, p50"),
                                   (0.2, "new episode p50 ms", "tab:gray",
                                    "new episode (reset + first call), p50")):
        vals = [summary[n][key] or float("nan") for n in names]
        bars = ax.bar([i + off for i in range(len(names))], vals, width=0.4, color=color,
                      label=label)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=7)
    ax.set_yscale("log")
    labels = [f"{n.replace(':', chr(10))}\nstate: {'yes' if summary[n]['state persists'] else 'no'}"
              f"\ntimeout: {'held' if summary[n]['timeout held'] else 'NOT held'}" for n in names]
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("python tool: our env step vs. GEM and the gpt-oss reference tool")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--reps", type=int, default=None, help="print(1) calls per contestant "
                   "(default 300, or 40 with --quick)")
    p.add_argument("--only", default="", help="comma-separated contestants to run "
                   "(e.g. ours:local,gem); default all")
    p.add_argument("--skip-install", action="store_true",
                   help="never build peer venvs; peers not yet installed are unavailable")
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks/results/peers_work",
                   help="where the peer venvs, the worker script and logs live")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/python_tool_peers.png",
                   help="where to save the bar plot (numbers go next to it as .json)")
    args = p.parse_args(argv)
    reps = args.reps or (40 if args.quick else 300)
    timeout_reps = 1 if args.quick else 3
    workdir = args.workdir.resolve()
    (workdir / "scratch").mkdir(parents=True, exist_ok=True)
    (workdir / "worker.py").write_text(WORKER_SRC.lstrip())

    only = {n.strip() for n in args.only.split(",") if n.strip()}
    specs, missing = contestants(workdir, args.skip_install, only)
    workers: list[Worker] = []
    for name, py, kind, kwargs, env in specs:
        say(f"[start] {name} ...")
        try:
            workers.append(Worker(name, py, kind, kwargs, workdir, env))
            say(f"[start] {name} ready in {workers[-1].start_ms / 1000:.2f} s")
        except Unavailable as e:
            missing[name] = str(e)
            say(f"[start] {name} unavailable: {e}")
    try:
        res = run(workers, reps, timeout_reps, missing)
    finally:
        for w in workers:
            w.close()
    summary = summarize(res, {w.name: w.start_ms for w in workers})
    say("\n" + "\n".join(report(summary, missing)))
    if summary:
        plot(summary, args.out)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"contestants": summary, "unavailable": missing, "reps": reps,
             "timeout_s": TIMEOUT_S, "cpus": os.cpu_count()}, indent=2))
        say(f"\nplot: {args.out}\nnumbers: {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
