"""Locating the harmony vocabulary and loading the gpt-oss encoding once per process."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import openai_harmony as oh

from agent_envs.errors import VocabularyError

__all__ = ["ENV_VAR", "VOCAB_FILE", "VOCAB_SHA256", "default_vocab_dirs", "load_encoding",
           "resolve_vocab_file", "use_default_vocab"]

ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"
VOCAB_FILE = "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

_FIX = (
    f"Set {ENV_VAR} to a directory that holds {VOCAB_FILE} "
    f"(sha256 {VOCAB_SHA256[:8]}...{VOCAB_SHA256[-4:]}); in this repository's CI that is "
    f"../shared/vocab, e.g. `export {ENV_VAR}=$PWD/../shared/vocab`."
)


def default_vocab_dirs() -> list[Path]:
    """Where the vocabulary is looked for when ``$TIKTOKEN_ENCODINGS_BASE`` is unset.

    ``shared/vocab`` beside the checkout (``<checkout>/../shared/vocab``), the layout of this
    repository's machines and CI.
    """
    checkout = Path(__file__).resolve().parents[2]
    return [checkout.parent / "shared" / "vocab"]


def use_default_vocab() -> Path | None:
    """Point ``$TIKTOKEN_ENCODINGS_BASE`` at the first of :func:`default_vocab_dirs` that holds
    the vocabulary, when the variable is unset; returns the directory it set, else None.

    openai-harmony reads the variable itself (and child processes inherit it), so it is set in
    ``os.environ`` rather than passed along.
    """
    if os.environ.get(ENV_VAR):
        return None
    for candidate in default_vocab_dirs():
        if (candidate / VOCAB_FILE).is_file():
            os.environ[ENV_VAR] = str(candidate)
            return candidate
    return None


def resolve_vocab_file() -> Path | None:
    """The vocabulary file named by ``$TIKTOKEN_ENCODINGS_BASE`` (or found by
    :func:`use_default_vocab` when it is unset), checked.

    Returns None when the variable is unset and no default directory holds the file
    (openai-harmony will then try its own cache or a download).

    Raises:
        VocabularyError: the variable is set but the file is missing or corrupt.
    """
    use_default_vocab()
    base = os.environ.get(ENV_VAR)
    if not base:
        return None
    path = Path(base).expanduser() / VOCAB_FILE
    if not path.is_file():
        raise VocabularyError(f"{ENV_VAR}={base!r} has no {VOCAB_FILE} (looked for {path}). {_FIX}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise VocabularyError(
            f"{path} has sha256 {digest}, expected {VOCAB_SHA256}: the file is corrupt or a "
            f"different vocabulary. {_FIX}"
        )
    return path


@functools.lru_cache(maxsize=1)
def load_encoding() -> oh.HarmonyEncoding:
    """The gpt-oss harmony encoding (cached; loading takes ~0.3 s).

    Raises:
        VocabularyError: the vocabulary cannot be found, read or downloaded.
    """
    resolve_vocab_file()
    try:
        return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    except oh.HarmonyError as e:
        where = os.environ.get(ENV_VAR)
        state = (f"{ENV_VAR}={where!r}" if where else
                 f"{ENV_VAR} is not set and no {VOCAB_FILE} is in "
                 f"{', '.join(str(d) for d in default_vocab_dirs())}")
        raise VocabularyError(
            f"openai-harmony could not load the gpt-oss vocabulary ({state}; harmony said: {e}). "
            f"{_FIX}"
        ) from e
