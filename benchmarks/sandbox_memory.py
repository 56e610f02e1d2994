"""Memory per sandbox session: the zygote server as it was against as it is, in one run.

    python benchmarks/sandbox_memory.py [--backend bubblewrap] [--sessions 128] [--cells 4]
        [--baseline-rev 7745b2c] [--arms before,python-keeper,after,...]
        [--out benchmarks/results/sandbox_memory.png]

Each arm starts a sandbox (in its own child process), opens ``--sessions`` sessions, runs
``--cells`` checked cells in each (``x = 1``, then ``x += 1`` whose value must come back), and
reads the PSS of every process of the sandbox (``/proc/PID/smaps_rollup``): the marginal PSS
per session (all of it, less the idle sandbox's) and its split by role (the session's keeper,
its cell, and the zygote with its fork template and the jail's own processes). Arms:

* ``before``: the ``sandboxes`` package of ``--baseline-rev`` (server and client: the wire
  format has changed since; written to a temp dir and imported instead of this checkout's);
* ``python-keeper``: this checkout with ``AGENT_ENVS_KEEPER=python``: each session's keeper
  stays a CPython process (the fallback where no C compiler is found);
* ``after``: this checkout as it runs by default: the C keeper where it builds (the table's
  ``keeper`` column says which keeper each arm ran);
* ``no-template``: this checkout's with ``--no-fork-template`` (sessions forked by the zygote
  itself, as before; the template's allocator pools are filled too, so this is both);
* ``no-rehearsal``: this checkout's with ``--no-rehearse``.

With ``--python PATH`` (another CPython's interpreter, e.g. a venv made with 3.12) one more arm,
``python <its version>``, runs this checkout's server on it, to set beside ``after`` (this
venv's interpreter). Compare like with like: a venv against a venv (a base interpreter's own
site-packages may import more at start; pyenv's 3.11 imports ``threading`` there).

Prints a table with each arm's ratio to ``before`` (else to ``python-keeper``) and the keeper
each ran (``c`` or ``python``), and saves a bar plot and the numbers as
JSON next to it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = {  # name -> (package: "baseline" or "checkout", extra server flags, AGENT_ENVS_KEEPER)
    "before": ("baseline", [], None),
    "python-keeper": ("checkout", [], "python"),
    "after": ("checkout", [], None),
    "no-template": ("checkout", ["--no-fork-template"], None),
    "no-rehearsal": ("checkout", ["--no-rehearse"], None),
}


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return 0


def by_role(root: int, session_pids: set[int]) -> dict[str, float]:
    """PSS (MB) of the sandbox's processes: keepers (session pids), their cells, the rest."""
    roles: collections.Counter[str] = collections.Counter()
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        todo += kids
        if pid in session_pids:
            roles["keeper"] += _pss_kb(pid)
            for cell in kids:
                roles["cell"] += _pss_kb(cell)
                todo.remove(cell)
                todo += _children(cell)
        else:
            roles["zygote, template, jail"] += _pss_kb(pid)
    return {k: v / 1024 for k, v in roles.items()}


def run_arm(backend: str, package: Path | None, flags: list[str], n: int, cells: int,
            python: str | None = None) -> dict[str, Any]:
    """In a child process: one sandbox, ``n`` sessions, ``cells`` cells each; the PSS.

    ``package``: a dir holding another ``sandboxes`` package (the baseline) to import instead
    of this checkout's."""
    if package is not None:
        sys.path.insert(0, str(package))
    import sandboxes
    from sandboxes import Limits, make_sandbox
    from sandboxes.zygote import ZygoteSandbox

    assert package is None or Path(sandboxes.__file__).is_relative_to(package)
    real = ZygoteSandbox._server_args
    ZygoteSandbox._server_args = (  # type: ignore[method-assign]
        lambda self, sock, scratch: [*real(self, sock, scratch), *flags])
    kwargs: dict[str, Any] = {"python": python} if python else {}
    sb = make_sandbox(backend, limits=Limits(timeout_s=60), **kwargs)
    try:
        root = sb._proc.pid  # type: ignore[attr-defined]
        time.sleep(1.0)  # the spares get ready
        idle = sum(by_role(root, set()).values())
        sessions, opens, runs, errors = [], [], [], collections.Counter()
        for i in range(n):
            t0 = time.perf_counter()
            sessions.append(sb.open())
            opens.append(time.perf_counter() - t0)
            if (i + 1) % 64 == 0:
                say(f"    {i + 1}/{n} sessions open")
        for c in range(cells):
            for s in sessions:
                t0 = time.perf_counter()
                r = s.run("x = 1" if c == 0 else "x += 1\nx")
                runs.append(time.perf_counter() - t0)
                if not r.ok or (c and r.value != str(c + 1)):
                    errors[r.error or f"got {r.value!r}, expected {c + 1}"] += 1
        time.sleep(0.5)
        pids = {s.pid for s in sessions}  # type: ignore[attr-defined]
        if not all(isinstance(p, int) for p in pids) or not sb.host_pids:  # type: ignore
            pids = _session_pids_by_tree(root)
        roles = by_role(root, pids)  # keepers: the sessions and the ready spares
        total = sum(roles.values())
        k = max(len(pids), 1)
        for s in sessions:
            s.close()
        return {"sessions": n, "cells": cells, "idle_mb": idle, "total_mb": total,
                "mb_per_session": (total - idle) / n,
                "keeper_mb": roles.get("keeper", 0.0) / k, "cell_mb": roles.get("cell", 0.0) / k,
                "rest_mb": roles.get("zygote, template, jail", 0.0),
                "open_p50_ms": pct(opens, 0.5) * 1e3, "open_p99_ms": pct(opens, 0.99) * 1e3,
                "run_p50_ms": pct(runs, 0.5) * 1e3, "run_p99_ms": pct(runs, 0.99) * 1e3,
                "errors": dict(errors), "features": sb.features,  # type: ignore[attr-defined]
                "keeper": sb.features.get("keeper") or "python"}  # type: ignore[attr-defined]
    finally:
        sb.close()


def _session_pids_by_tree(root: int) -> set[int]:
    """Host pids of the keepers: processes whose only child is a childless process (the
    cell), below the zygote (whose children are the keepers, the template and spares)."""
    out: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if len(kids) > 8:  # the zygote
            out.update(k for k in kids if len(_children(k)) == 1)
            continue
        todo += kids
    return out


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    base_name = next((n for n in ("before", "python-keeper") if n in results), None)
    base = results.get(base_name) if base_name else None
    header = ("arm                        MB/session  ratio  keeper   cell  zygote+template+jail MB"
              "  open p50/p99 ms  run p50/p99 ms  errors  keeper kind")
    lines = [f"(ratios to {base_name})" if base_name else "(no baseline arm: no ratios)",
             header]
    for name, r in results.items():
        ratio = f"{r['mb_per_session'] / base['mb_per_session']:.2f}x" if base else "-"
        lines.append(
            f"{name:<26} {r['mb_per_session']:>10.2f}  {ratio:>5}  {r['keeper_mb']:>6.2f} "
            f"{r['cell_mb']:>6.2f}  {r['rest_mb']:>23.1f}  {r['open_p50_ms']:>7.1f}/"
            f"{r['open_p99_ms']:<7.1f} {r['run_p50_ms']:>6.1f}/{r['run_p99_ms']:<7.1f} "
            f"{sum(r['errors'].values()):>6}  {r.get('keeper', '?')}")
    return lines


def plot(results: dict[str, dict[str, Any]], path: Path, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{n}\n({results[n].get('keeper', '?')} keeper)" for n in results]
    fig, ax = plt.subplots(figsize=(8, 4))
    keeper = [r["keeper_mb"] for r in results.values()]
    cell = [r["cell_mb"] for r in results.values()]
    total = [r["mb_per_session"] for r in results.values()]
    ax.bar(names, keeper, label="keeper process", color="#4c72b0")
    ax.bar(names, cell, bottom=keeper, label="cell process", color="#dd8452")
    ax.plot(names, total, "ko", label="marginal PSS per session (all processes)")
    for i, t in enumerate(total):
        ax.annotate(f"{t:.2f}", (i, t), textcoords="offset points", xytext=(0, 6), ha="center")
    n = next(iter(results.values()))["sessions"]
    ax.set_ylabel("MB PSS per session")
    ax.set_title(f"{backend} sandbox: memory per python session ({n} sessions)")
    ax.legend(loc="lower left", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="bubblewrap", choices=("bubblewrap", "local"))
    ap.add_argument("--sessions", type=int, default=128)
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--baseline-rev", default="7745b2c",
                    help="git revision whose sandboxes package is the 'before' arm")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arm names")
    ap.add_argument("--python", default=None,
                    help="also run this checkout's server on this interpreter (e.g. a venv "
                         "made with another CPython; bubblewrap only)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sandbox_memory.png"))
    ap.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--package", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.arm is not None:  # the child: one arm (its AGENT_ENVS_KEEPER set by the parent)
        result = run_arm(a.backend, a.package, ARMS.get(a.arm, ("", [], None))[1], a.sessions,
                         a.cells, a.python)
        assert a.json is not None
        a.json.write_text(json.dumps(result))
        return 0
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        raise SystemExit(f"error: unknown arm(s) {unknown}; choose from {list(ARMS)}")
    pythons: dict[str, str] = {}  # extra arm -> interpreter
    if a.python:
        if a.backend != "bubblewrap":
            raise SystemExit("error: --python compares interpreters on the bubblewrap backend")
        try:
            ver = subprocess.run([a.python, "-c", "import sys; print(sys.version.split()[0])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"error: --python {a.python!r} does not run: {e}") from None
        pythons[f"python {ver}"] = a.python
        arms += list(pythons)
    if a.sessions < 1 or a.cells < 2:
        raise SystemExit("error: --sessions must be >= 1 and --cells >= 2")
    say(f"sandbox memory: {a.backend}, {a.sessions} sessions x {a.cells} cells; baseline "
        f"server from {a.baseline_rev}; load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        if "before" in arms:
            baseline.mkdir()
            try:
                archive = subprocess.run(["git", "archive", a.baseline_rev, "sandboxes"],
                                         cwd=ROOT, check=True, capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True,
                               capture_output=True)
            except subprocess.CalledProcessError as e:
                raise SystemExit(f"error: cannot read the sandboxes package at --baseline-rev "
                                 f"{a.baseline_rev!r}: {e.stderr.decode().strip()}") from None
        for arm in arms:
            say(f"[{arm}]")
            out = Path(tmp) / "arm.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--json", str(out),
                   "--backend", a.backend, "--sessions", str(a.sessions), "--cells", str(a.cells)]
            env = dict(os.environ)
            env.pop("AGENT_ENVS_KEEPER", None)
            if arm in pythons:
                cmd += ["--python", pythons[arm]]
            else:
                if ARMS[arm][0] == "baseline":
                    cmd += ["--package", str(baseline)]
                if ARMS[arm][2] is not None:
                    env["AGENT_ENVS_KEEPER"] = ARMS[arm][2]
            if subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0:
                say(f"error: the {arm!r} arm failed")
                return 1
            results[arm] = json.loads(out.read_text())
            r = results[arm]
            say(f"    {r['mb_per_session']:.2f} MB PSS per session (keeper {r['keeper_mb']:.2f}, "
                f"cell {r['cell_mb']:.2f}); errors {sum(r['errors'].values())}; "
                f"keeper: {r.get('keeper', '?')}"
                + (f" ({r['features']['keeper_error']})"
                   if r.get("features", {}).get("keeper_error") else ""))
    say("")
    for line in table(results):
        say(line)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, a.out, a.backend)
    a.out.with_suffix(".json").write_text(json.dumps(
        {"backend": a.backend, "sessions": a.sessions, "cells": a.cells,
         "baseline_rev": a.baseline_rev, "loadavg": os.getloadavg()[0], "results": results},
        indent=1))
    say(f"\nplot: {a.out}  numbers: {a.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
