"""Harmony codec for gpt-oss: token ids in, token ids out, through ``openai-harmony``.

The harmony token ids every package uses are defined here and only here: ``RETURN``
(``<|return|>``), ``CALL`` (``<|call|>``), ``END`` (``<|end|>``), ``START``
(``<|start|>``), ``STOP_TOKEN_IDS``, ``ENDOFTEXT`` (the pad token), ``FIRST_SPECIAL_ID`` and
``VOCAB_SIZE``.
"""

from __future__ import annotations

from agent_envs.harmony.codec import (
    CALL,
    END,
    ENDOFTEXT,
    FIRST_SPECIAL_ID,
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
    "CALL", "END", "ENDOFTEXT", "ENV_VAR", "FIRST_SPECIAL_ID", "RETURN", "START", "STOP_TOKEN_IDS", "VOCAB_FILE", "VOCAB_SIZE",
    "AnalysisPolicy", "FunctionTool", "HarmonyCodec", "ParsedCompletion", "SystemConfig",
    "drop_analysis", "get_codec", "load_encoding", "message_text", "resolve_vocab_file",
]
