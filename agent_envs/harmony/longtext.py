"""Tokenizing text with very long runs, without the tokenizer's slow path or its panic.

openai-harmony's tokenizer splits text into pieces (runs of letters, of punctuation, of
whitespace, ...) and byte-pair-merges each piece in time that grows with the square of its
length (``benchmarks/long_run_tokenize.py`` measures it against ours), and a megabyte
overflows the Rust stack in its split regex (a panic that prints a Rust backtrace to stderr). Text like that reaches the codec
whenever a model's huge argument is echoed back (a browser query shown as a page title, a
find pattern) or a caller passes a huge ``str`` action.

:func:`encode_ordinary` and :func:`encode_with_specials` encode a text in one pass, exactly as
openai-harmony does, unless its runs of non-space (or space) characters of :data:`LONG_RUN` or
more would cost the tokenizer more than about two seconds (the sum of their squared lengths
over :data:`RUN_BUDGET`, e.g. one run of 32,768 letters). Such a text has those runs cut into
:data:`RUN_CHUNK`-character chunks; the text around them is encoded as usual. The result
decodes to the same text; only the token boundaries inside the long runs may differ from a
one-pass encoding (which the tokenizer cannot produce in reasonable time). Every prompt this
package renders (the longest: a d5 ``kgram`` string of 30,000 letters) stays in one pass.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["LONG_RUN", "RUN_BUDGET", "RUN_CHUNK", "encode_ordinary", "encode_with_specials",
           "has_long_run"]

#: Runs this long or longer count towards :data:`RUN_BUDGET` (the tokenizer's time grows with
#: the square of a run's length; see benchmarks/long_run_tokenize.py).
LONG_RUN = 1024
#: A text whose long runs' squared lengths sum past this is encoded with them in chunks.
RUN_BUDGET = 32_768**2
#: Chunk size inside a long run (chunks of 128 and more cost several times as much).
RUN_CHUNK = 64

_RUN = re.compile(rf"\S{{{LONG_RUN},}}|\s{{{LONG_RUN},}}")


def has_long_run(text: str) -> bool:
    """Whether one-pass tokenization of ``text`` would be slow (or panic): its runs of
    :data:`LONG_RUN` or more characters have squared lengths summing past :data:`RUN_BUDGET`."""
    if len(text) < LONG_RUN:
        return False
    cost = 0
    for m in _RUN.finditer(text):
        cost += (m.end() - m.start()) ** 2
        if cost > RUN_BUDGET:
            return True
    return False


def encode_ordinary(encoding: Any, text: str) -> list[int]:
    """Ordinary tokens of ``text`` (special-token strings count as plain text), long runs in
    chunks."""
    if not has_long_run(text):
        return list(encoding.encode(text, disallowed_special=()))
    out: list[int] = []
    pos = 0
    for m in _RUN.finditer(text):
        if m.start() > pos:
            out.extend(encoding.encode(text[pos:m.start()], disallowed_special=()))
        run = m.group()
        for i in range(0, len(run), RUN_CHUNK):
            out.extend(encoding.encode(run[i:i + RUN_CHUNK], disallowed_special=()))
        pos = m.end()
    if pos < len(text):
        out.extend(encoding.encode(text[pos:], disallowed_special=()))
    return out


@functools.lru_cache(maxsize=4)
def _special_pattern(specials: frozenset[str]) -> re.Pattern[str]:
    return re.compile("(" + "|".join(re.escape(s) for s in sorted(specials, key=len,
                                                                  reverse=True)) + ")")


def encode_with_specials(encoding: Any, text: str) -> list[int]:
    """Tokens of ``text`` with harmony's special-token strings as special tokens (as
    ``encode(text, allowed_special="all")``), long runs in chunks."""
    if not has_long_run(text):
        return list(encoding.encode(text, allowed_special="all"))
    specials = frozenset(encoding.special_tokens_set)
    out: list[int] = []
    for piece in _special_pattern(specials).split(text):
        if not piece:
            continue
        if piece in specials:
            out.extend(encoding.encode(piece, allowed_special="all"))
        else:
            out.extend(encode_ordinary(encoding, piece))
    return out
