"""How a page is shown: 80-column lines, ``L{n}: `` numbers, a window of 1024 o200k tokens,
``find`` results pages, and the header ``[cursor] title (url)``.

All of it follows OpenAI's reference browser tool, byte for byte (the tests compare). Token
counts come from openai-harmony's encoding (the o200k vocabulary gpt-oss reads), never from
tiktoken: harmony's ``o200k_harmony`` has the same ordinary tokens as ``o200k_base``.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from urllib.parse import quote, unquote

import numpy as np

from agent_envs.envs.browser.page import Page, Snippet
from agent_envs.harmony.longtext import encode_ordinary

__all__ = [
    "TokenCounter", "find_in_page", "get_token_counter", "numbered", "render_display",
    "strip_links", "truncate", "window_end", "window_end_direct", "wrap_lines",
]

_LEADING_PARTIAL_LINK = re.compile(r"^[^【】]*】")
_TRAILING_PARTIAL_LINK = re.compile(r"【\d*(?:†(?P<content>[^†】]*)(?:†[^†】]*)?)?$")
_LINK = re.compile(r"【\d+†(?P<content>[^†】]+)(?:†[^†】]+)?】")


def truncate(text: str, limit: int = 1024) -> str:
    """``text`` cut to ``limit`` characters, the last three being ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=64)
def wrap_lines(text: str, width: int = 80) -> tuple[str, ...]:
    """Lines of at most ``width`` columns (``textwrap``, keeping whitespace); blank lines stay."""
    out: list[str] = []
    for line in text.split("\n"):
        if line:
            out.extend(textwrap.wrap(line, width=width, replace_whitespace=False,
                                     drop_whitespace=False))
        else:
            out.append("")
    return tuple(out)


def numbered(lines: tuple[str, ...] | list[str], first: int = 0) -> str:
    """``L{n}: line`` for each line, numbered from ``first``, joined by newlines."""
    return "\n".join([f"L{first + i}: {line}" for i, line in enumerate(lines)])


class TokenCounter:
    """Character offsets of o200k tokens, for the view window.

    The reference measures a token's width as the length of its decoded text (invalid UTF-8
    decodes to U+FFFD, one character each) and cuts the text it tokenizes at
    ``(view_tokens + 1) * widest token`` characters; this does the same with
    openai-harmony's encoding.
    """

    def __init__(self, encoding: object) -> None:
        self._encoding = encoding
        self._widths: np.ndarray | None = None
        self._lines: dict[tuple[str, bool], list[int]] = {}
        self._heads: dict[int, list[int]] = {}

    @property
    def widths(self) -> np.ndarray:
        """Decoded length of every token id (computed once, ~0.2 s)."""
        if self._widths is None:
            enc = self._encoding
            n = 200_019  # o200k_base's n_vocab: ordinary tokens, then <|endoftext|>...
            widths = np.ones(n, dtype=np.int32)
            for i in range(n):
                try:
                    widths[i] = len(enc.decode([i]))  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - ids with no token count as one, as there
                    widths[i] = 1
            self._widths = widths
        return self._widths

    @property
    def widest(self) -> int:
        """The most characters any one token decodes to."""
        return int(self.widths.max())

    def segment_widths(self, n: int, line: str, *, last: bool) -> list[int]:
        """Widths of the tokens of ``L{n}: {line}`` plus a newline unless ``last``."""
        key = (line, last)
        body = self._lines.get(key)
        if body is None:
            widths = self.widths
            body = [int(widths[t]) for t in self.encode(": " + line + ("" if last else "\n"))]
            if len(self._lines) >= 65_536:
                self._lines.clear()
            self._lines[key] = body
        head = self._heads.get(n)
        if head is None:
            widths = self.widths
            head = [int(widths[t]) for t in self.encode("L") + self.encode(str(n))]
            self._heads[n] = head
        return head + body

    def encode(self, text: str) -> list[int]:
        """Ordinary tokens of ``text`` (special-token strings count as plain text)."""
        return encode_ordinary(self._encoding, text)  # long runs in chunks: no tokenizer panic

    def char_offset(self, text: str, n_tokens: int) -> int | None:
        """Where token number ``n_tokens`` of ``text`` starts, in characters of the running
        sum of token widths; None when ``text`` has ``n_tokens`` tokens or fewer."""
        tokens = self.encode(text)
        if len(tokens) <= n_tokens:
            return None
        return int(self.widths[np.asarray(tokens[:n_tokens], dtype=np.int64)].sum())


_COUNTER: TokenCounter | None = None


def get_token_counter() -> TokenCounter:
    """The process-wide counter over the harmony codec's encoding."""
    global _COUNTER
    if _COUNTER is None:
        from agent_envs.harmony import get_codec
        _COUNTER = TokenCounter(get_codec().encoding)
    return _COUNTER


def window_end_direct(lines: tuple[str, ...], loc: int, num_lines: int, view_tokens: int,
                      counter: TokenCounter) -> int:
    """:func:`window_end` computed the direct way: tokenize the numbered rest of the page
    (cut at ``(view_tokens + 1) * widest`` characters) and find the line holding token
    ``view_tokens``. Kept as the definition the fast path is tested against."""
    total = len(lines)
    if num_lines <= 0:
        rest = numbered(lines[loc:], loc)
        num_lines = total
        if len(rest) > view_tokens:
            offset = counter.char_offset(rest[: (view_tokens + 1) * counter.widest], view_tokens)
            if offset is not None:
                num_lines = rest[:offset].count("\n") + 1
    return min(loc + num_lines, total)


def window_end(lines: tuple[str, ...], loc: int, num_lines: int, view_tokens: int,
               counter: TokenCounter) -> int:
    """One past the last line shown when viewing from ``loc``.

    With ``num_lines > 0`` that many lines are shown. Otherwise as many as fit in
    ``view_tokens`` tokens of the numbered text ``L{n}: line\n...``: the line holding token
    number ``view_tokens`` is the last one shown (or every line, when the rest of the page
    has no more tokens than that).

    Same result as :func:`window_end_direct`, without tokenizing the whole rest of the page
    on every view: o200k's pre-tokenizer never joins a newline with a following letter, so
    each numbered line is tokenized on its own (``L``, the digits, then ``": " + line +
    "\n"``, which is cached per line text) and the token counts are summed.
    """
    total = len(lines)
    if num_lines > 0:
        return min(loc + num_lines, total)
    chars = sum(len(line) for line in lines[loc:]) + sum(
        len(f"L{n}: ") for n in range(loc, total)) + (total - loc - 1)
    if chars <= view_tokens:
        return total
    remaining = view_tokens
    width = 0  # running sum of token widths (the reference's character offsets)
    for n in range(loc, total):
        widths = counter.segment_widths(n, lines[n], last=n == total - 1)
        if remaining < len(widths):
            end = width + int(sum(widths[:remaining]))
            return min(loc + _newlines_before(lines, loc, end) + 1, total)
        remaining -= len(widths)
        width += int(sum(widths))
    return total


def _newlines_before(lines: tuple[str, ...], loc: int, end: int) -> int:
    """How many newlines ``numbered(lines[loc:], loc)[:end]`` contains."""
    pos, count = 0, 0
    for n in range(loc, len(lines) - 1):
        pos += len(f"L{n}: ") + len(lines[n]) + 1  # just past this line's newline
        if pos - 1 >= end:
            break
        count += 1
    return count


def render_display(page: Page, cursor: int, body: str, first: int, last: int,
                   total_lines: int) -> str:
    """The tool message for a page view: ``[cursor] title (url)``, the scrollbar, the lines."""
    shown_url = truncate(unquote(page.url))
    head = page.title + (f" ({shown_url})" if shown_url else "")
    return f"[{cursor}] {head}\n**viewing lines [{first} - {last}] of {total_lines}**\n\n{body}"


def strip_links(text: str) -> str:
    """Link markers replaced by their text (partial markers at either end of the text too)."""
    text = _LEADING_PARTIAL_LINK.sub("", text)
    text = _TRAILING_PARTIAL_LINK.sub(lambda m: m.group("content"), text)
    return _LINK.sub(lambda m: m.group("content"), text)


def find_in_page(pattern: str, page: Page, *, max_results: int = 50,
                 context_lines: int = 4) -> Page:
    """The ``find`` results page for a lower-cased ``pattern``.

    Each match shows as ``# 【i†match at L{n}】`` and the ``context_lines`` lines from the
    match; the search goes on after them. Link ``i`` points back into the page at line
    ``n`` (opening it scrolls there).
    """
    lines = strip_links("\n".join(wrap_lines(page.text))).split("\n")
    chunks: list[str] = []
    snippets: dict[str, Snippet] = {}
    i = 0
    while i < len(lines) and len(chunks) < max_results:
        if pattern in lines[i].lower():
            k = len(chunks)
            shown = "\n".join(lines[i: i + context_lines])
            chunks.append(f"# 【{k}†match at L{i}】\n{shown}")
            snippets[str(k)] = Snippet(url=page.url, text=shown, title=f"#{k}", line_idx=i)
            i += context_lines
        else:
            i += 1
    return Page(
        url=f"{page.url}/find?pattern={quote(pattern)}",
        title=f"Find results for text: `{pattern}` in `{page.title}`",
        text="\n\n".join(chunks) if chunks else f"No `find` results for pattern: `{pattern}`",
        urls={str(k): page.url for k in range(len(chunks))},
        snippets=snippets,
    )
