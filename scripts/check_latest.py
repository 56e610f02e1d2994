"""Run the test suite against the newest releases and say which package broke what.

    python3 scripts/check_latest.py [--beyond-bounds] [--workdir DIR] [--extras dev,train,ray]
                                    [-- PYTEST_ARGS...]

Not part of CI: run it before refreshing ``requirements.lock`` (``scripts/lock.sh``).

1. Builds ``WORKDIR/latest``, a venv with the newest releases that pyproject.toml allows
   (``--beyond-bounds``: the newest releases, ignoring our upper bounds), and lists every
   package whose version differs from the lock.
2. Runs the suite there (``AGENT_ENVS_UNLOCKED=1``, so the lock-equality test stands aside).
3. When tests fail, builds ``WORKDIR/bisect`` from the lock and, for each changed package
   alone (direct dependencies first), upgrades it, re-runs only the failed tests and puts the
   lock back. It prints, per package, the tests that its new release breaks on its own; tests
   that no single upgrade breaks are reported as broken by a combination.

Exit code: 0 when the suite passes on the newest releases, 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check"]


def say(msg: str) -> None:
    print(f"[check-latest] {msg}", flush=True)


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canon(name)] = version
    return pins


def direct_requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def req_name(req: str) -> str:
    return canon(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, check=False, **kw)  # type: ignore[call-overload]


def make_venv(path: Path) -> Path:
    py = path / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return py


def pip(py: Path, *args: str) -> None:
    res = run([str(py), *PIP, *args])
    if res.returncode != 0:
        out = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                        if not ln.startswith("WARNING: Location"))
        raise SystemExit(f"[check-latest] pip install {' '.join(args)} failed:\n{out[-3000:]}")


def installed(py: Path) -> dict[str, str]:
    res = run([str(py), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    return {canon(d["name"]): d["version"] for d in json.loads(res.stdout)}


def pytest(py: Path, workdir: Path, args: list[str], label: str) -> list[str]:
    """Run pytest; return the ids of failed and errored tests."""
    report = workdir / f"junit-{label}.xml"
    env = dict(os.environ, AGENT_ENVS_UNLOCKED="1")
    env.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    t0 = time.monotonic()
    res = run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               *args], env=env)
    tail = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
    say(f"  {label}: {tail} ({time.monotonic() - t0:.0f} s)")
    if not report.exists():
        raise SystemExit(f"[check-latest] pytest wrote no report:\n{res.stdout[-3000:]}"
                         f"{res.stderr[-3000:]}")
    failed = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(node_id(case.get("classname", ""), case.get("name", "")))
    return failed


def node_id(classname: str, name: str) -> str:
    """pytest's node id from junit's dotted classname (module path, then any classes)."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (ROOT / path).exists():
            return "::".join([path, *parts[i:], name])
    return f"{classname}::{name}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/agent-envs-check-latest"))
    ap.add_argument("--extras", default="dev,train,ray")
    ap.add_argument("--lock", type=Path, default=LOCK, help="the lock to compare against")
    ap.add_argument("--beyond-bounds", action="store_true",
                    help="ignore pyproject's upper bounds (find what a bound now holds back)")
    ap.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    extras = a.extras.split(",")
    pins = read_lock(a.lock)
    reqs = direct_requirements(extras)
    direct = {req_name(r) for r in reqs}

    say(f"1/3 newest releases into {a.workdir / 'latest'}"
        + (" (beyond pyproject's bounds)" if a.beyond_bounds else ""))
    py = make_venv(a.workdir / "latest")
    if a.beyond_bounds:
        pip(py, "--no-deps", "-e", str(ROOT))
        loose = [r if req_name(r) == "torch" else re.split(r"[<>=!~;]", r, maxsplit=1)[0]
                 for r in reqs]
        pip(py, "--upgrade", "--upgrade-strategy", "eager", *loose)
    else:
        pip(py, "--upgrade", "--upgrade-strategy", "eager", "-e", f".[{a.extras}]")
    now = installed(py)
    tooling = {"agent-envs", "pip", "setuptools", "wheel"}
    changed = {n: (pins.get(n, "-"), v) for n, v in now.items()
               if n not in tooling and pins.get(n) != v}
    order = sorted(changed, key=lambda n: (n not in direct, n))
    for n in order:
        say(f"  {n}: {changed[n][0]} -> {changed[n][1]}" + ("  (direct)" if n in direct else ""))
    if not changed:
        say("  every package is at its locked version: nothing newer to check")

    say("2/3 the suite on the newest releases")
    failed = pytest(py, a.workdir, a.pytest_args, "latest")
    if not failed:
        say("PASS: the suite passes on the newest releases; refresh the lock with "
            "scripts/lock.sh")
        return 0
    if not changed:
        say(f"{len(failed)} tests fail at the locked versions too: not a dependency problem")
        return 1

    say(f"3/3 {len(failed)} failed; upgrading one changed package at a time from the lock")
    bisect = make_venv(a.workdir / "bisect")
    restore = ["-c", str(a.lock.resolve()), "-e", f".[{a.extras}]"]
    pip(bisect, *restore)
    blamed: dict[str, list[str]] = {}
    for n in order:
        if changed[n][1] == "-":
            continue
        pip(bisect, f"{n}=={changed[n][1]}")
        broke = pytest(bisect, a.workdir, failed, f"{n}-{changed[n][1]}")
        blamed[n] = [t for t in broke if t in failed]
        pip(bisect, *restore)

    print("\npackage (lock -> newest) | tests its new release breaks on its own")
    for n, tests in blamed.items():
        if tests:
            print(f"{n} {changed[n][0]} -> {changed[n][1]} | {len(tests)}")
            for t in tests:
                print(f"    {t}")
    alone = {t for ts in blamed.values() for t in ts}
    rest = [t for t in failed if t not in alone]
    if rest:
        print(f"broken only by a combination of upgrades (or flaky) | {len(rest)}")
        for t in rest:
            print(f"    {t}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
