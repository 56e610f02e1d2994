"""Suite-wide set-up: the harmony vocabulary lives in ../shared/vocab (no internet here)."""

from __future__ import annotations

import os
from pathlib import Path

_VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "vocab"
if not os.environ.get("TIKTOKEN_ENCODINGS_BASE") and (_VOCAB / "o200k_base.tiktoken").is_file():
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)
