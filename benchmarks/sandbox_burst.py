"""Burst benchmark: thousands of sessions opened at the same instant against one zygote.

    python benchmarks/sandbox_burst.py [--backend bubblewrap] [--sessions 1024]
                                       [--backlog 64] [--baseline-rev ed26313~1]
                                       [--out benchmarks/results/sandbox_burst.png]

Issue 24 lost 679 of 1,024 sessions opened at once against one bubblewrap zygote: the
zygote's listen backlog (256) filled while it handed out sessions, the kernel refused the
other connects with EAGAIN, and the client called the zygote dead. Now the zygote listens with
a backlog of 4096 (capped by ``net.core.somaxconn``) and the client retries a refused connect
with backoff while the zygote lives.

This opens ``--sessions`` sessions from as many threads released by one barrier, runs one call
in each, and prints how many were lost (by error kind), the zygote restarts, the wall time and
the open latency percentiles; with ``--backlog`` the zygote listens with that backlog instead,
so the retry path carries the burst. With ``--baseline-rev`` the same burst runs first with the
``sandboxes`` package of that git revision (server and client; e.g. ``ed26313~1``, before the
fix), in a child process, and both rows are printed. Saves the open latency distribution as a
plot and the numbers as JSON next to it.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# --sandboxes-root (a child running another revision's package) must win the import below.
_OTHER = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--sandboxes-root"),
              None)
sys.path.insert(0, _OTHER or str(ROOT))

from sandboxes import Limits, make_sandbox
from sandboxes.zygote import ZygoteSandbox


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def burst(backend: str, n: int, backlog: int | None) -> dict[str, Any]:
    if backlog is not None:
        real = ZygoteSandbox._server_args
        ZygoteSandbox._server_args = (  # type: ignore[method-assign]
            lambda self, sock, scratch: [*real(self, sock, scratch), "--backlog", str(backlog)])
    # Each session holds a socket here: make room for them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 256)), hard))
    say(f"[{backend}] starting the sandbox (backlog {backlog or 'default'})")
    sb = make_sandbox(backend, limits=Limits(timeout_s=60))
    go = threading.Barrier(n + 1)
    lock = threading.Lock()
    opened: list[Any] = []
    latency: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}

    def opener() -> None:
        go.wait()
        t0 = time.perf_counter()
        try:
            s = sb.open()
        except Exception as e:  # noqa: BLE001 - counted by kind
            kind = type(e).__name__ + (": died" if "died" in str(e) else "")
            with lock:
                errors[kind] += 1
                examples.setdefault(kind, str(e)[:300])
            return
        with lock:
            latency.append(time.perf_counter() - t0)
            opened.append(s)
            done = len(opened) + sum(errors.values())
        if sys.stdout.isatty() and done % 64 == 0:
            print(f"\r  opened {done}/{n}", end="", flush=True)

    threads = [threading.Thread(target=opener, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    say(f"\r[{backend}] {len(opened)}/{n} opened in {wall:.1f} s; running one call in each")
    bad_calls = 0
    try:
        for s in opened:
            try:
                bad_calls += s.run("6 * 7").value != "42"
            except Exception:  # noqa: BLE001 - e.g. its zygote was replaced: counted
                bad_calls += 1
    finally:
        for s in opened:
            try:
                s.close()
            except Exception:  # noqa: BLE001, S110 - a session of a replaced zygote
                pass
        restarts = getattr(sb, "restarts", 0)
        sb.close()
    return {"backend": backend, "sessions": n, "backlog": backlog or "own",
            "opened": len(opened), "lost": n - len(opened), "errors": dict(errors),
            "error_examples": examples, "bad_calls": bad_calls, "restarts": restarts,
            "wall_s": wall, "open_p50_s": pct(latency, 0.5), "open_p99_s": pct(latency, 0.99),
            "open_max_s": max(latency, default=float("nan")), "latency_s": sorted(latency)}


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = res["latency_s"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lat, [(i + 1) / res["sessions"] for i in range(len(lat))])
    ax.set_xlabel("seconds from the burst to the session being ready")
    ax.set_ylabel("fraction of the burst's sessions ready")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{res['sessions']} opens at once, one {res['backend']} zygote "
                 f"(backlog {res['backlog']}): {res['lost']} lost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="bubblewrap", help="local or bubblewrap")
    p.add_argument("--sessions", type=int, default=1024, help="opens in the burst")
    p.add_argument("--backlog", type=int, default=None,
                   help="listen backlog of the zygote (default: its own, 4096)")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).parent / "results" / "sandbox_burst.png",
                   help="where to save the plot (numbers go next to it as .json)")
    p.add_argument("--baseline-rev", default=None,
                   help="also run the burst with the sandboxes package of this git revision "
                        "first (e.g. ed26313~1, before the burst fix), and print both")
    p.add_argument("--sandboxes-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.json is not None:  # a child: one burst with --sandboxes-root's package
        args.json.write_text(json.dumps(burst(args.backend, args.sessions, args.backlog)))
        return 0
    rows = []
    if args.baseline_rev:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                tar = subprocess.run(["git", "archive", args.baseline_rev, "sandboxes"],
                                     cwd=ROOT, check=True, capture_output=True).stdout
            except subprocess.CalledProcessError as e:
                raise SystemExit(f"error: cannot read sandboxes/ at --baseline-rev "
                                 f"{args.baseline_rev!r}: {e.stderr.decode().strip()}") from None
            subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
            out = Path(tmp) / "burst.json"
            say(f"[{args.baseline_rev}] the same burst with that revision's sandboxes package")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--sandboxes-root", tmp,
                   "--json", str(out), "--backend", args.backend,
                   "--sessions", str(args.sessions)]
            if args.backlog is not None:
                cmd += ["--backlog", str(args.backlog)]
            if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
                say(f"error: the burst with {args.baseline_rev} failed to run")
                return 1
            rows.append((args.baseline_rev, json.loads(out.read_text())))
    res = burst(args.backend, args.sessions, args.backlog)
    rows.append(("this checkout", res))
    say(f"\n{'sandboxes':<14} {'backend':<11} {'sessions':>8} {'backlog':>7} {'lost':>5} "
        f"{'bad calls':>9} {'restarts':>8} {'wall s':>7} {'open p50 s':>10} {'open p99 s':>10}")
    for name, r in rows:
        say(f"{name:<14} {r['backend']:<11} {r['sessions']:>8} {r['backlog']:>7} "
            f"{r['lost']:>5} {r['bad_calls']:>9} {r['restarts']:>8} {r['wall_s']:>7.1f} "
            f"{r['open_p50_s']:>10.2f} {r['open_p99_s']:>10.2f}")
    for name, r in rows:
        for kind, count in r["errors"].items():
            say(f"  {name}: lost to {kind}: {count}, e.g. {r['error_examples'][kind]}")
    if args.baseline_rev:
        res = {**res, "baseline": {"rev": args.baseline_rev,
                                   **{k: v for k, v in rows[0][1].items() if k != "latency_s"}}}
    args.out.with_suffix(".json").parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    plot(res, args.out)
    say(f"\nplot: {args.out}\nnumbers: {args.out.with_suffix('.json')}")
    return 0 if res["lost"] == 0 and res["bad_calls"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
