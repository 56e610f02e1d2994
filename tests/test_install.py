"""The install is reproducible: requirements.lock agrees with pyproject.toml and is what runs.

``scripts/setup.sh`` and ``.ci/run`` install from ``requirements.lock``; ``scripts/lock.sh``
refreshes it. These tests fail when someone edits pyproject.toml without refreshing the lock,
when the lock is edited into something pyproject does not allow, and when the environment the
suite runs in is not the locked one (set ``AGENT_ENVS_UNLOCKED=1`` to run the suite against
other versions on purpose, as ``scripts/check_latest.py`` does).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
NOT_LOCKED_EXTRAS = {"gpu"}  # vllm / flash-attn need CUDA; they are never installed here


def parse_lock(text: str) -> dict[str, Version]:
    """``name==version`` lines (comments and blanks skipped) as {canonical name: version}."""
    pins: dict[str, Version] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m is None:
            raise ValueError(f"requirements.lock line {n} is not 'name==version': {line!r}")
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def lock_problems(pyproject: dict, pins: dict[str, Version]) -> list[str]:
    """Every way the lock disagrees with pyproject's requirements (empty when they agree)."""
    project = pyproject["project"]
    reqs = [(None, r) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        if extra not in NOT_LOCKED_EXTRAS:
            reqs += [(extra, r) for r in items]
    problems = []
    for extra, text in reqs:
        req = Requirement(text)
        where = f"[{extra}] " if extra else ""
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):
            continue  # one extra naming others ("agent-envs[browser]"): checked there
        if name not in pins:
            problems.append(f"{where}{text}: not in requirements.lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{where}{text}: the lock has {req.name}=={pins[name]}")
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return parse_lock((ROOT / "requirements.lock").read_text())


def test_lock_satisfies_every_requirement_of_pyproject(pyproject: dict, pins: dict) -> None:
    problems = lock_problems(pyproject, pins)
    assert not problems, ("requirements.lock disagrees with pyproject.toml; refresh it with "
                          "`bash scripts/lock.sh`:\n  " + "\n  ".join(problems))


def test_a_disagreement_is_reported(pyproject: dict, pins: dict) -> None:
    bumped = dict(pins, transformers=Version("6.0.0"))
    missing = {k: v for k, v in pins.items() if k != "gymnasium"}
    assert any("transformers" in p and "6.0.0" in p for p in lock_problems(pyproject, bumped))
    assert any("gymnasium" in p and "not in" in p for p in lock_problems(pyproject, missing))


def test_lock_lines_are_exact_pins() -> None:
    with pytest.raises(ValueError, match="line 2 is not 'name==version'"):
        parse_lock("numpy==2.0.0\ntransformers>=5\n")
    assert parse_lock("# c\nTorch==2.13.0+cpu  # cpu wheel\n") == {"torch": Version("2.13.0+cpu")}


def test_every_major_release_above_the_tested_one_is_excluded(pyproject: dict) -> None:
    """pyproject's ranges carry an upper bound, so a fresh resolve cannot jump a major."""
    project = pyproject["project"]
    texts = list(project["dependencies"]) + [
        r for extra, items in project["optional-dependencies"].items()
        if extra not in NOT_LOCKED_EXTRAS for r in items]
    unbounded = []
    for text in texts:
        req = Requirement(text)
        if req.name in ("packaging", project["name"]):  # stable API; our own extras
            continue
        if not any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier):
            unbounded.append(text)
    assert not unbounded, f"requirements without an upper bound: {unbounded}"


@pytest.mark.skipif(os.environ.get("AGENT_ENVS_UNLOCKED") == "1",
                    reason="AGENT_ENVS_UNLOCKED=1: running against other versions on purpose")
def test_the_suite_runs_on_the_locked_versions(pins: dict) -> None:
    off = []
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and Version(dist.version) != pins[name]:
            off.append(f"{name} {dist.version} (lock: {pins[name]})")
    assert not off, ("installed versions differ from requirements.lock; run "
                     "`bash scripts/setup.sh dev,train,ray`: " + ", ".join(sorted(off)))


# Names that the locked transformers / TRL / peft deprecate; our code uses the replacements.
DEPRECATED = {
    r"\.is_gradient_checkpointing\b": "is_activation_checkpointing (transformers 5)",
    r"\bpast_key_values\s*=": "cache= (transformers 5.24)",
    r"\.past_key_values\b": "output.cache (transformers 5.24)",
    r"\btorch_dtype\s*=": "dtype= (transformers 5)",
    r"\bprocessing_class\b.*\btokenizer\s*=": "processing_class= (TRL)",
}


def test_our_code_uses_no_deprecated_api() -> None:
    hits = []
    for pkg in ("agent_envs", "sandboxes", "trainers", "benchmarks", "scripts", "tests"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == Path(__file__).resolve() or {"results", "site-packages"} & set(path.parts):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                for pattern, instead in DEPRECATED.items():
                    if re.search(pattern, code):
                        hits.append(f"{path.relative_to(ROOT)}:{n}: use {instead}")
    assert not hits, "deprecated API in our code:\n  " + "\n  ".join(hits)
