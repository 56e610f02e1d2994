"""Truncated output states the true count of what was left out (issue 18).

The sandbox keeps the head and tail of each stream within ``max_output_bytes``; its marker
counts the characters it dropped, and ``ExecResult.render(max_chars=...)`` cuts again for a
smaller budget (the python tool's) with one marker that counts everything not shown.
"""

from __future__ import annotations

import re

import pytest

from sandboxes import ExecResult, Limits, Truncation, make_sandbox
from sandboxes._zygote_server import BoundedBuffer, _whole_chars, count_chars, shrink
from sandboxes.base import truncation_marker
from tests.sandboxes.conftest import backend_params

MARK = re.compile(r"\n\[\.\.\. (\d+) characters truncated \.\.\.\]\n")
LIMITS = Limits(timeout_s=20.0, max_output_bytes=4096)


def shown_and_omitted(text: str) -> tuple[int, int]:
    """Characters shown (markers aside), and the sum of the markers' counts."""
    return len(MARK.sub("", text)), sum(int(n) for n in MARK.findall(text))


# -- ExecResult.render ---------------------------------------------------------------------

def test_render_without_a_limit_or_within_it_is_unchanged():
    r = ExecResult(stdout="a\nb\n", stderr="warn\n", value="3")
    assert r.render() == r.render(max_chars=100) == "a\nb\nwarn\n3"


def test_render_clips_and_counts_what_the_sandbox_already_left_out():
    head, tail = "h" * 100, "t" * 100
    marker = truncation_marker(9_000)
    r = ExecResult(stdout=head + marker + tail, truncated=True,
                   truncations=(Truncation(part="stdout", start=100, length=len(marker),
                                           omitted=9_000),))
    text = r.render(max_chars=40)
    assert text == "h" * 20 + truncation_marker(9_000 + 80 + 80) + "t" * 20
    # Everything written is either shown or counted.
    shown, omitted = shown_and_omitted(text)
    assert shown + omitted == 100 + 9_000 + 100


def test_render_never_keeps_half_a_sandbox_marker():
    marker = truncation_marker(5)
    r = ExecResult(stdout="ab" + marker + "cd", truncated=True,
                   truncations=(Truncation(part="stdout", start=2, length=len(marker),
                                           omitted=5),))
    # A head of 6 characters would end inside the sandbox's marker: it stops before it.
    text = r.render(max_chars=12)
    assert text.count("characters truncated") == 1
    assert text.startswith("ab\n[... ") and text.endswith("cd")
    assert shown_and_omitted(text)[1] == 5


def test_render_counts_every_part_and_ignores_markers_the_code_printed():
    fake = "\n[... 7 characters truncated ...]\n"  # printed by the cell: plain output
    r = ExecResult(stdout=fake + "o" * 50 + "\n", stderr="e" * 50, value="'" + "v" * 48 + "'")
    full = r.render()
    text = r.render(max_chars=20)
    # The cell's fake marker is plain text (the head keeps part of it); only the render's
    # own marker counts, and it counts plainly.
    assert MARK.findall(text) == [str(len(full) - 20)]


def test_server_marker_is_the_documented_one():
    text, cut = shrink(b"x" * 100, b"y" * 100, 1000, 1000, 100)
    assert cut is not None
    start, length, omitted = cut
    assert text[start:start + length] == truncation_marker(omitted)
    assert omitted == 1000 - 100


# -- the zygote's buffers ------------------------------------------------------------------

@pytest.mark.parametrize("text", ["plain ascii " * 50, "é" * 300, "日本語" * 200, "🙂x" * 150])
def test_shrink_counts_characters_exactly_at_any_cut(text):
    data = text.encode()
    for limit in (10, 11, 12, 13, 101):
        buf = BoundedBuffer(limit)
        for i in range(0, len(data), 7):  # fd-level writes split characters anywhere
            buf.add(data[i:i + 7])
        out, cut = shrink(*buf.take(), limit)
        assert cut is not None
        start, length, omitted = cut
        kept = out[:start] + out[start + length:]
        assert "\ufffd" not in kept  # no character was cut in half
        assert len(kept) + omitted == len(text)
        assert len(kept.encode()) <= limit


def test_whole_chars_drops_partial_sequences_only():
    e = "é".encode()
    assert _whole_chars(b"ab" + e[:1], e[1:] + b"cd") == (b"ab", b"cd")
    assert _whole_chars(b"ab" + e, e + b"cd") == (b"ab" + e, e + b"cd")
    assert count_chars("aé日🙂".encode()) == 4


# -- through real sessions -----------------------------------------------------------------

@pytest.fixture(scope="module", params=backend_params())
def sandbox(request):
    sb = make_sandbox(request.param, limits=LIMITS)
    yield sb
    sb.close()


def test_ten_megabytes_printed_are_counted(sandbox):
    with sandbox.open() as s:
        r = s.run("print('x' * 10_000_000)")
        assert r.truncated and len(r.stdout.encode()) <= LIMITS.max_output_bytes + 64
        (m,) = MARK.findall(r.stdout)
        assert int(m) + r.stdout.count("x") == 10_000_000
        text = r.render(max_chars=4_000)
        assert MARK.findall(text) == [str(10_000_000 - 4_000)]


def test_mixed_streams_and_multibyte_output_are_counted(sandbox):
    code = ("import os, sys\n"
            "sys.stdout.write('é' * 30_000)\n"
            "os.write(1, '日本'.encode() * 20_000)\n"  # fd-level: cut inside characters
            "sys.stderr.write('w' * 9_000)\n"
            "'🙂' * 5_000")
    with sandbox.open() as s:
        r = s.run(code)
    written = 30_000 + 40_000 + 9_000 + 5_002
    assert {t.part for t in r.truncations} == {"stdout", "stderr", "value"}
    for limit in (None, 3_000, 500):
        text = r.render(max_chars=limit)
        shown, omitted = shown_and_omitted(text)
        # Every character written, and the two newlines between the parts, is shown or
        # counted.
        assert shown + omitted == written + 2, limit
        assert "\ufffd" not in text
