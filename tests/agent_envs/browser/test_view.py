"""The view window's fast path (per-line token counts, cached) equals the direct definition
(tokenize the numbered rest of the page), on generated pages of any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_envs.envs.browser.view import (
    get_token_counter,
    window_end,
    window_end_direct,
    wrap_lines,
)

_ALPHABET = st.sampled_from(list("abcXYZ019 \t\r.,:;()/-'\"【】†") + [
    "東", "京", "é", "ü", "\u0301", "𠀀", "🚀", "\u200b", "<|endoftext|>", "  ", "\n", "\n\n",
    "L1: ", "https://x.example/a", "ـ", "한"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=400).map("".join), st.integers(1, 300),
       st.integers(0, 50))
def test_fast_window_equals_the_direct_definition(text, view_tokens, loc):
    lines = wrap_lines(text)
    loc = min(loc, len(lines) - 1)
    counter = get_token_counter()
    assert window_end(lines, loc, -1, view_tokens, counter) == \
        window_end_direct(lines, loc, -1, view_tokens, counter)


def test_explicit_num_lines_and_short_rests():
    counter = get_token_counter()
    lines = wrap_lines("one\ntwo\nthree")
    assert window_end(lines, 0, 2, 1024, counter) == 2
    assert window_end(lines, 1, -1, 1024, counter) == 3
    long_lines = wrap_lines("word " * 5000)
    end = window_end(long_lines, 0, -1, 1024, counter)
    assert 1 < end < len(long_lines)
    assert end == window_end_direct(long_lines, 0, -1, 1024, counter)
