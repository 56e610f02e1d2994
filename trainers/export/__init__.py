"""Export trained gpt-oss models for inference engines (llama.cpp's GGUF).

``export_gguf(source, out, outtype=...)`` converts a Hugging Face gpt-oss directory, a
trainer checkpoint (LoRA merged) or a model object with llama.cpp's own converter; the
tokenizer comes from the harmony vocabulary (``harmony_tokenizer_dir``). The CLI is
``agent-envs export gguf SOURCE OUT.gguf``. Importing this package imports neither torch
nor transformers.
"""

from __future__ import annotations

from trainers.export.gguf import (
    CONVERTER_TYPES,
    QUANTIZE_TYPES,
    ExportResult,
    GGUFExportError,
    export_gguf,
    hf_dir_for,
)
from trainers.export.llamacpp_dist import (
    BUILD_SCRIPT,
    LLAMA_CPP_PYTHON_VERSION,
    LlamaCppNotBuiltError,
    cache_root,
    cpu_tag,
    find_binary,
    source_dir,
)
from trainers.export.tokenizer import TokenizerBuildError, harmony_tokenizer_dir

__all__ = [
    "BUILD_SCRIPT",
    "CONVERTER_TYPES",
    "LLAMA_CPP_PYTHON_VERSION",
    "QUANTIZE_TYPES",
    "ExportResult",
    "GGUFExportError",
    "LlamaCppNotBuiltError",
    "TokenizerBuildError",
    "cache_root",
    "cpu_tag",
    "export_gguf",
    "find_binary",
    "harmony_tokenizer_dir",
    "hf_dir_for",
    "source_dir",
]
