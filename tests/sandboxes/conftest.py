"""Fixtures shared by the sandbox tests: one sandbox per backend per module, leak checks."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator

import pytest

from sandboxes import Limits, Sandbox, available_backends, make_sandbox

FAST = Limits(timeout_s=5.0, cpu_s=20, memory_mb=1024, max_procs=32, max_file_mb=8,
              max_output_bytes=4096)


def backend_params() -> list:
    """local, bubblewrap and docker, each marked, skipped with the reason when unavailable."""
    reasons = available_backends()
    params = []
    for name, marks in (("local", []), ("bubblewrap", [pytest.mark.bwrap]),
                        ("docker", [pytest.mark.docker])):
        if name == "docker" and importlib.util.find_spec("sandboxes.docker_backend") is None:
            reasons[name] = "sandboxes.docker_backend is not installed"
        reason = reasons.get(name)
        if reason is not None:
            marks = [*marks, pytest.mark.skip(reason=f"{name} unavailable: {reason}")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module")
def local_sandbox() -> Iterator[Sandbox]:
    sb = make_sandbox("local", limits=FAST)
    yield sb
    sb.close()


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (via /proc/*/stat parent links), zombies excluded."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
