"""Export gpt-oss checkpoints to GGUF with llama.cpp's own converter, for ``llama-server``.

Three kinds of source, one path (:func:`export_gguf`):

- a Hugging Face gpt-oss directory (``config.json`` + safetensors: openai/gpt-oss-20b as
  downloaded, or a ``save_pretrained`` of ours). A directory without a tokenizer gets
  gpt-oss's, built offline from the harmony vocabulary (:mod:`trainers.export.tokenizer`);
- a trainer checkpoint (``runs/.../checkpoints/step_NNNNNN.pt``): the model is rebuilt
  from the config stored in it (tiny or a base checkpoint), its weights or LoRA adapters
  loaded, and LoRA merged into the weights;
- a model object (``GptOssForCausalLM``, or a peft model whose adapters are merged);
- ``"tiny"``: the tiny random gpt-oss a default train config builds (seed 0).

The conversion itself is llama.cpp's ``convert_hf_to_gguf.py`` from the vendored source
that ``scripts/build_llama_server.sh`` fetches (the same llama.cpp the server is built
from), run as a subprocess of this Python. Its output types are ``f32``, ``f16``, ``bf16``
and ``q8_0``; any type ``llama-quantize`` knows (``q4_0``, ``q4_k_m``, ``mxfp4_moe``, ...)
is made from an f32 export by the built ``llama-quantize``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.errors import TrainersError
from trainers.export.llamacpp_dist import find_binary, source_dir
from trainers.export.tokenizer import TOKENIZER_FILES, harmony_tokenizer_dir

__all__ = [
    "CONVERTER_TYPES",
    "QUANTIZE_TYPES",
    "ExportResult",
    "GGUFExportError",
    "export_gguf",
    "hf_dir_for",
    "template_gguf",
    "template_path",
]

#: Output types ``convert_hf_to_gguf.py`` writes itself.
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
#: Output types made by ``llama-quantize`` from an f32 export (a selection of its list).
QUANTIZE_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k", "mxfp4_moe")


class GGUFExportError(TrainersError, RuntimeError):
    """A checkpoint could not be exported to GGUF (the message says why and what to do)."""


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """What :func:`export_gguf` wrote.

    Attributes:
        path: The GGUF file.
        outtype: Its type (``f32``, ``bf16``, ``q4_0``, ...).
        seconds: Wall time of the export.
        bytes: File size.
    """

    path: Path
    outtype: str
    seconds: float
    bytes: int


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def _merged_model(model: Any) -> Any:
    """A plain ``GptOssForCausalLM`` with any LoRA adapters folded in (the input is kept)."""
    if hasattr(model, "merge_and_unload"):
        import copy

        return copy.deepcopy(model).merge_and_unload()
    return model


def _model_from_checkpoint(path: Path) -> Any:
    """Rebuild the trainer's model from a ``step_NNNNNN.pt`` checkpoint, LoRA merged."""
    import torch

    from trainers.config import ConfigError, config_from_dict
    from trainers.train import build_model

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = config_from_dict(state["config"])
    except (KeyError, TypeError, ConfigError, RuntimeError, EOFError) as e:
        raise GGUFExportError(
            f"{path} is not a trainer checkpoint this version can read ({type(e).__name__}: "
            f"{e}); pass a checkpoints/step_NNNNNN.pt written by `agent-envs train`, or a "
            f"Hugging Face gpt-oss directory.") from e
    model = build_model(config)
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state["model"])
    else:
        model.load_state_dict(state["model"])
    return _merged_model(model)


def _tiny_model() -> Any:
    """The tiny random gpt-oss a default train config builds (``model.name = "tiny"``)."""
    from trainers.config import TrainConfig
    from trainers.train import build_model

    return build_model(TrainConfig())


def _save_model(model: Any, out: Path) -> None:
    import torch

    model = _merged_model(model)
    if getattr(getattr(model, "config", None), "model_type", None) != "gpt_oss":
        raise GGUFExportError(
            f"export_gguf got a {type(model).__name__} (model_type="
            f"{getattr(getattr(model, 'config', None), 'model_type', None)!r}); only gpt-oss "
            f"models (transformers' GptOssForCausalLM) can be exported.")
    with torch.no_grad():
        model.save_pretrained(out, safe_serialization=True)


@contextmanager
def hf_dir_for(source: Any) -> Iterator[Path]:
    """A Hugging Face directory of ``source`` with a tokenizer, for the converter.

    User directories are never written to: a directory without a tokenizer is mirrored
    (symlinks) into a temporary one beside the harmony tokenizer files.

    Raises:
        GGUFExportError: ``source`` is none of the supported kinds.
    """
    with tempfile.TemporaryDirectory(prefix="agent-envs-gguf-") as tmp:
        work = Path(tmp) / "model"
        if isinstance(source, str) and source == "tiny":
            _save_model(_tiny_model(), work)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser()
            if path.is_file() and path.suffix == ".pt":
                _save_model(_model_from_checkpoint(path), work)
            elif path.is_dir() and _is_hf_dir(path):
                if (path / "adapter_config.json").is_file() and not any(path.glob("model*")):
                    raise GGUFExportError(
                        f"{path} holds only LoRA adapters (adapter_config.json); merge them "
                        f"first (peft: PeftModel.from_pretrained(base, dir).merge_and_unload()"
                        f".save_pretrained(out)), or export the trainer checkpoint (.pt).")
                if (path / "tokenizer.json").is_file():
                    yield path
                    return
                work.mkdir()
                for f in path.iterdir():
                    if f.is_file():
                        _link_or_copy(f, work / f.name)
            elif path.is_dir() and (path / "adapter_config.json").is_file():
                raise GGUFExportError(
                    f"{path} holds only LoRA adapters (no config.json of a full model); "
                    f"export the trainer checkpoint (.pt) instead, which merges them.")
            else:
                raise GGUFExportError(
                    f"cannot export {str(path)!r}: not a Hugging Face gpt-oss directory (with "
                    f"config.json) nor a trainer checkpoint (.pt)"
                    + ("; it does not exist" if not path.exists() else "") + ".")
        elif hasattr(source, "save_pretrained"):
            _save_model(source, work)
        else:
            raise GGUFExportError(
                f"export_gguf needs a path or a gpt-oss model object, got "
                f"{type(source).__name__}.")
        tok = harmony_tokenizer_dir()
        for name in TOKENIZER_FILES:
            if not (work / name).exists():
                shutil.copy2(tok / name, work / name)
        yield work


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise GGUFExportError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def convert(hf_dir: Path, out: Path, outtype: str = "f32") -> None:
    """Run llama.cpp's ``convert_hf_to_gguf.py`` on ``hf_dir`` (one of :data:`CONVERTER_TYPES`)."""
    src = source_dir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter then imports its own vendored gguf-py
    _run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(hf_dir), "--outfile",
          str(out), "--outtype", outtype], f"llama.cpp's converter ({src})", env)


def quantize(src: Path, out: Path, qtype: str) -> None:
    """``llama-quantize SRC OUT QTYPE`` (the built binary)."""
    _run([str(find_binary("llama-quantize")), str(src), str(out), qtype.upper()],
         "llama-quantize")


def template_gguf(model: Any, outtype: str = "f32") -> Path:
    """A GGUF of ``model``'s architecture written by llama.cpp's converter, cached by
    architecture (config, type, llama.cpp version, vocabulary).

    Its tensor data is whatever the model that first filled the cache held:
    :func:`trainers.export.gguf_weights.write_weights` replaces every tensor, so any model
    of the same architecture gets a correct GGUF from it in a fraction of a second instead
    of a converter run.

    Args:
        model: A gpt-oss model object (a peft wrapper is merged).
        outtype: A type :func:`write_weights` encodes (``f32``, ``f16``, ``bf16``, ``q8_0``).
    """
    path = template_path(model, outtype)
    if not path.is_file():
        export_gguf(model, path, outtype=outtype)
    return path


def template_path(model: Any, outtype: str = "f32") -> Path:
    """Where :func:`template_gguf` caches the template of ``model``'s architecture.

    Any converter export of a model of that architecture and type may be put there.
    """
    import hashlib
    import json

    from trainers.export.gguf_weights import FAST_TYPES
    from trainers.export.llamacpp_dist import LLAMA_CPP_PYTHON_VERSION, cache_root

    if outtype.upper() not in FAST_TYPES:
        raise GGUFExportError(f"a template must be one of {', '.join(FAST_TYPES)} (the types "
                              f"weights can be pushed into), got {outtype!r}.")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = {k: v for k, v in base.config.to_dict().items()
           if k not in _VOLATILE_CONFIG_KEYS and not k.startswith("_")}
    key = hashlib.sha256(json.dumps([cfg, outtype, LLAMA_CPP_PYTHON_VERSION],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root() / "templates" / f"gpt-oss-{key}-{outtype}.gguf"


_VOLATILE_CONFIG_KEYS = frozenset({"transformers_version", "torch_dtype", "dtype", "use_cache",
                                   "architectures", "output_router_logits"})


def export_gguf(source: Any, out: str | os.PathLike[str], *, outtype: str = "f32"
                ) -> ExportResult:
    """Export a gpt-oss checkpoint to one GGUF file.

    Args:
        source: A Hugging Face gpt-oss directory, a trainer checkpoint (``.pt``; LoRA
            adapters are merged), a model object, or ``"tiny"``.
        out: The ``.gguf`` file to write (its directory is created).
        outtype: One of :data:`CONVERTER_TYPES` or :data:`QUANTIZE_TYPES`.

    Returns:
        The path, type, time and size.

    Raises:
        GGUFExportError: a bad source or type, or the converter failed.
        LlamaCppNotBuiltError: the converter (or ``llama-quantize``) is not fetched/built.
    """
    outtype = outtype.lower()
    if outtype not in CONVERTER_TYPES + QUANTIZE_TYPES:
        import difflib

        near = difflib.get_close_matches(outtype, CONVERTER_TYPES + QUANTIZE_TYPES, n=1)
        raise GGUFExportError(
            f"outtype={outtype!r} is not supported; use one of "
            f"{', '.join(CONVERTER_TYPES + QUANTIZE_TYPES)}"
            + (f" (did you mean {near[0]!r}?)" if near else "") + ".")
    out_path = Path(out).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    source_dir()  # fail before any work when the converter is missing
    if outtype in QUANTIZE_TYPES:
        find_binary("llama-quantize")
    tmp_out = out_path.with_name(out_path.name + ".part")
    with hf_dir_for(source) as hf:
        if outtype in CONVERTER_TYPES:
            convert(hf, tmp_out, outtype)
        else:
            f32 = out_path.with_name(out_path.name + ".f32.part")
            try:
                convert(hf, f32, "f32")
                quantize(f32, tmp_out, outtype)
            finally:
                f32.unlink(missing_ok=True)
    tmp_out.replace(out_path)
    return ExportResult(path=out_path, outtype=outtype, seconds=time.perf_counter() - t0,
                        bytes=out_path.stat().st_size)
