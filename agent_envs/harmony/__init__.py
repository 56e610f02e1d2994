"""Harmony codec for gpt-oss: token ids in, token ids out, through ``openai-harmony``."""

from __future__ import annotations

from agent_envs.harmony.codec import (
    CALL,
    END,
    RETURN,
    START,
    STOP_TOKEN_IDS,
    VOCAB_SIZE,
    AnalysisPolicy,
    FunctionTool,
    HarmonyCodec,
    ParsedCompletion,
    SystemConfig,
    drop_analysis,
    get_codec,
    message_text,
)
from agent_envs.harmony.vocab import ENV_VAR, VOCAB_FILE, load_encoding, resolve_vocab_file

__all__ = [
    "CALL", "END", "ENV_VAR", "RETURN", "START", "STOP_TOKEN_IDS", "VOCAB_FILE", "VOCAB_SIZE",
    "AnalysisPolicy", "FunctionTool", "HarmonyCodec", "ParsedCompletion", "SystemConfig",
    "drop_analysis", "get_codec", "load_encoding", "message_text", "resolve_vocab_file",
]
