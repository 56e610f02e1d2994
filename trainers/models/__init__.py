"""gpt-oss model handling for training: loading, sink-aware attention, chunked log-probs, LoRA.

Importing this subpackage imports torch (``import trainers`` alone does not);
transformers and peft are imported inside the functions that use them.
"""

from __future__ import annotations

from trainers.models.attention import (
    SINK_AWARE_IMPLEMENTATIONS,
    SinkUnsupportedError,
    check_attn_implementation,
    register_sink_attention,
    sdpa_with_sinks,
)
from trainers.models.gpt_oss import (
    GPT_OSS_20B_HPARAMS,
    GPT_OSS_VOCAB_SIZE,
    GptOssLoadConfig,
    ModelLoadError,
    build_tiny_gpt_oss,
    gpt_oss_20b_config,
    load_gpt_oss,
    tiny_gpt_oss_config,
)
from trainers.models.logprobs import ChunkedLogprobs, chunked_logprobs, logprobs_from_hidden
from trainers.models.lora import LoraConfigError, LoraSettings, apply_lora

__all__ = [
    "GPT_OSS_20B_HPARAMS",
    "GPT_OSS_VOCAB_SIZE",
    "SINK_AWARE_IMPLEMENTATIONS",
    "ChunkedLogprobs",
    "GptOssLoadConfig",
    "LoraConfigError",
    "LoraSettings",
    "ModelLoadError",
    "SinkUnsupportedError",
    "apply_lora",
    "build_tiny_gpt_oss",
    "check_attn_implementation",
    "chunked_logprobs",
    "gpt_oss_20b_config",
    "load_gpt_oss",
    "logprobs_from_hidden",
    "register_sink_attention",
    "sdpa_with_sinks",
    "tiny_gpt_oss_config",
]
