"""Shared by the llama.cpp tests: skip markers and one tiny GGUF per test session.

The converter run (transformers, the 201,088-token vocabulary) is the slow part, so the
tiny model is exported once, through the CLI (``agent-envs export gguf tiny ...``), and
every test that needs a GGUF file reuses that file or pushes its own weights into a copy.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from trainers.export.llamacpp_dist import (
    BUILD_SCRIPT,
    LlamaCppNotBuiltError,
    find_binary,
    source_dir,
)


def _has_source() -> bool:
    try:
        source_dir()
    except LlamaCppNotBuiltError:
        return False
    return True


def _has_server() -> bool:
    try:
        find_binary("llama-server")
        find_binary("llama-quantize")
    except LlamaCppNotBuiltError:
        return False
    return True


#: Set by CI (.ci/run): a missing build fails the llama.cpp tests instead of skipping them.
REQUIRE_ENV = "AGENT_ENVS_REQUIRE_LLAMACPP"
if os.environ.get(REQUIRE_ENV) == "1" and not (_has_server() and _has_source()):
    raise RuntimeError(f"{REQUIRE_ENV}=1 but llama.cpp's llama-server/llama-quantize or its "
                       f"source is not built for this machine; run: {BUILD_SCRIPT}")

#: Tests that run llama.cpp's converter (the vendored source, no compile).
needs_converter = pytest.mark.skipif(
    not _has_source(), reason=f"llama.cpp's converter is not fetched; run: {BUILD_SCRIPT} "
                              f"--source-only (or {BUILD_SCRIPT} to build the server too)")
#: Tests that run llama-server (the built binaries) — marker ``llamacpp``.
needs_server = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(not (_has_server() and _has_source()),
                       reason=f"llama-server is not built; run: {BUILD_SCRIPT}"),
]

_TMP = Path(tempfile.mkdtemp(prefix="agent-envs-llamacpp-tests-"))
atexit.register(shutil.rmtree, _TMP, True)


def tmp_root() -> Path:
    """A directory that lives as long as the test session."""
    return _TMP


@functools.cache
def tiny_gguf(outtype: str = "f32") -> Path:
    """The trainer's tiny random gpt-oss, exported by ``agent-envs export gguf tiny``.

    It also seeds the weight-push template cache for the tiny architecture
    (:func:`trainers.export.gguf.template_path`), so ``LlamaCppPolicy.for_model`` and the
    trainer's llama.cpp sampler need no second converter run.
    """
    from trainers.export.cli import main
    from trainers.export.gguf import template_path

    out = _TMP / f"tiny-{outtype}.gguf"
    assert main(["gguf", "tiny", str(out), "--outtype", outtype]) == 0
    cached = template_path(tiny_model(0), outtype)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, cached)
    return out


@functools.cache
def tiny_model(seed: int = 0):
    """The model ``tiny_gguf`` holds (seed 0: the default train config's), float32, eval."""
    from trainers.config import TrainConfig, config_from_dict, config_to_dict
    from trainers.train import build_model

    cfg = config_to_dict(TrainConfig())
    cfg["model"]["init_seed"] = seed
    return build_model(config_from_dict(cfg)).eval()
