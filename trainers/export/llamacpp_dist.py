"""Where ``scripts/build_llama_server.sh`` puts llama.cpp: its source (converter) and binaries.

The build script and this module agree on one layout, keyed by the pinned
``llama-cpp-python`` version (and, for ``-march=native`` builds, by the CPU's instruction
set)::

    ${AGENT_ENVS_CACHE:-~/.cache/agent-envs}/llama.cpp/<version>/
        src/                    the vendored llama.cpp (convert_hf_to_gguf.py, gguf-py)
        <cpu-tag>/bin/llama-server, llama-quantize

``tests/trainers/test_llamacpp_export.py`` holds :func:`cpu_tag` equal to the script's.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from pathlib import Path

from trainers.errors import TrainersError

__all__ = [
    "BUILD_SCRIPT",
    "LLAMA_CPP_PYTHON_VERSION",
    "LlamaCppNotBuiltError",
    "cache_root",
    "cpu_tag",
    "find_binary",
    "source_dir",
]

#: The llama-cpp-python sdist whose vendored llama.cpp is built (pinned in the build script).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
#: The one command that builds (or finds) the binaries.
BUILD_SCRIPT = "bash scripts/build_llama_server.sh"
_SERVER_ENV = "AGENT_ENVS_LLAMA_SERVER"


class LlamaCppNotBuiltError(TrainersError, FileNotFoundError):
    """llama.cpp's source or binaries are not where the build script puts them."""


def cache_root() -> Path:
    """``${AGENT_ENVS_CACHE:-~/.cache/agent-envs}/llama.cpp/<version>``."""
    base = os.environ.get("AGENT_ENVS_CACHE") or str(Path.home() / ".cache" / "agent-envs")
    return Path(base).expanduser() / "llama.cpp" / LLAMA_CPP_PYTHON_VERSION


def cpu_tag(native: bool = True) -> str:
    """The build's cache key for this machine (as the build script computes it)."""
    machine = platform.machine()
    if not native:
        return f"portable-{machine}"
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    return "native-" + hashlib.sha256(f"{machine} {flags}".encode()).hexdigest()[:10]


def source_dir() -> Path:
    """The vendored llama.cpp source (holds ``convert_hf_to_gguf.py``).

    Raises:
        LlamaCppNotBuiltError: the build script has not fetched it yet.
    """
    src = cache_root() / "src"
    if not (src / "convert_hf_to_gguf.py").is_file():
        raise LlamaCppNotBuiltError(
            f"llama.cpp's GGUF converter is not at {src} (llama-cpp-python "
            f"{LLAMA_CPP_PYTHON_VERSION}'s vendored source). Fetch it (no compile, ~77 MB) with: "
            f"{BUILD_SCRIPT} --source-only   (or build everything: {BUILD_SCRIPT})")
    return src


def find_binary(name: str = "llama-server") -> Path:
    """A llama.cpp binary: ``$AGENT_ENVS_LLAMA_SERVER`` (for llama-server), this CPU's
    cached build, any cached build, then ``PATH``.

    Raises:
        LlamaCppNotBuiltError: none found (the message gives the build command).
    """
    if name == "llama-server" and os.environ.get(_SERVER_ENV):
        path = Path(os.environ[_SERVER_ENV]).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LlamaCppNotBuiltError(
                f"{_SERVER_ENV}={str(path)!r} is not an executable file; point it at a "
                f"llama-server binary or unset it to use {BUILD_SCRIPT}'s build.")
        return path
    root = cache_root()
    for tag in (cpu_tag(True), cpu_tag(False)):
        candidate = root / tag / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise LlamaCppNotBuiltError(
        f"no {name} binary: not in {root}/<cpu-tag>/bin (this CPU's tag is {cpu_tag()}) nor "
        f"on PATH. Build it once (CPU, a few minutes on many cores; cached, keyed by "
        f"version) with: {BUILD_SCRIPT}" + (f"   or set {_SERVER_ENV}=/path/to/llama-server"
                                            if name == "llama-server" else ""))
