"""The fast harmony paths agree with openai-harmony, token for token and field for field.

``parse_completion_fast`` must either return exactly what openai-harmony's parser returns or
decline (None); it must never accept a stream openai-harmony rejects. The cached tool-message
renderer must give openai-harmony's ``render`` tokens for any text.
"""

from __future__ import annotations

import numpy as np
import openai_harmony as oh
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent_envs.harmony import codec as codec_module
from agent_envs.harmony import get_codec
from agent_envs.harmony.fast import parse_completion_fast

CODEC = get_codec()
ENC = CODEC.encoding
SPECIALS = [200002, 200003, 200005, 200006, 200007, 200008, 200012, 199998, 199999, 200010]
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def harmony_parse(ids: list[int]) -> list[dict] | None:
    try:
        return [m.to_dict() for m in ENC.parse_messages_from_completion_tokens(
            ids, oh.Role.ASSISTANT)]
    except Exception:  # noqa: BLE001 - any rejection
        return None


def fast_parse(ids: list[int]) -> list[dict] | None:
    msgs = parse_completion_fast(ids, ENC.decode_utf8)
    return None if msgs is None else [m.to_dict() for m in msgs]


# -- generated completions, the way a model writes them ---------------------------------

words = st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from(
    "_.-"), min_size=1, max_size=12)
channel = st.sampled_from(["analysis", "commentary", "final"]) | words
recipient = st.none() | st.sampled_from(
    ["python", "functions.get_weather", "browser.search", "browser.open", "assistant"]) | words
ctype = st.none() | st.sampled_from(["code", "json", "<|constrain|>json", " <|constrain|>json"])
content = st.text(max_size=80) | st.sampled_from(
    ["print(1)", "{\"city\": \"Paris\"}", "x = 1\nprint(x)", "", "héllo 世界 🙂", "a  b\t\n"])


@st.composite
def header(draw: st.DrawFn) -> str:
    ch, to, ct = draw(channel), draw(recipient), draw(ctype)
    to_part = f" to={to}" if to else ""
    place = draw(st.sampled_from(["after", "before"]))
    text = (f"<|channel|>{ch}{to_part}" if place == "after" else f"{to_part}<|channel|>{ch}")
    if ct:
        text += ct if ct.startswith((" ", "<")) else f" {ct}"
    return text


@st.composite
def completion(draw: st.DrawFn) -> list[int]:
    n = draw(st.integers(1, 3))
    text = ""
    for i in range(n):
        if i:
            text += "<|start|>assistant"
        text += draw(header()) + "<|message|>" + draw(content)
        text += "<|end|>" if i < n - 1 else draw(st.sampled_from(
            ["<|call|>", "<|return|>", "<|end|>", ""]))
    return CODEC.encode(text)


@SETTINGS
@given(completion())
def test_fast_parser_equals_harmony_on_generated_completions(ids: list[int]) -> None:
    fast = fast_parse(ids)
    if fast is not None:
        assert fast == harmony_parse(ids)


@SETTINGS
@given(completion(), st.data())
def test_fast_parser_equals_harmony_on_mutated_completions(ids: list[int], data) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        at = data.draw(st.integers(0, len(ids)))
        tok = data.draw(st.sampled_from(SPECIALS) | st.integers(0, 199997))
        if op == "insert":
            ids = ids[:at] + [tok] + ids[at:]
        elif ids and at < len(ids):
            ids = ids[:at] + ([tok] if op == "replace" else []) + ids[at + 1:]
    assume(ids)
    fast = fast_parse(ids)
    if fast is not None:
        assert fast == harmony_parse(ids)


@SETTINGS
@given(st.lists(st.sampled_from(SPECIALS) | st.integers(0, 199997), min_size=1, max_size=24))
def test_fast_parser_never_accepts_what_harmony_rejects(ids: list[int]) -> None:
    fast = fast_parse(ids)
    if fast is not None:
        assert fast == harmony_parse(ids)


def test_fast_parser_takes_the_common_completions() -> None:
    """The fast path is not a parser that always declines: trained-model shapes go through."""
    shapes = [
        "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
        ("<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final"
         "<|message|>42<|return|>"),
        ("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
         "{\"city\": \"Paris\"}<|call|>"),
        " to=browser.search<|channel|>analysis code<|message|>{\"query\": \"x\"}<|call|>",
        "<|channel|>final<|message|>cut sh",
        "<|channel|>analysis<|message|>héllo 世界<|end|>",
    ]
    for text in shapes:
        ids = CODEC.encode(text)
        assert fast_parse(ids) is not None, text
        assert fast_parse(ids) == harmony_parse(ids), text


@pytest.mark.parametrize("text", [
    "<|channel|><|message|>x<|call|>",                      # empty channel: harmony raises
    "<|channel|>analysis extra words here<|message|>x<|call|>",  # leftover header tokens
    "<|channel|>analysis<|message|>x<|end|>junk",          # no <|start|> after <|end|>
    "<|channel|>analysis<|message|>x<|end|><|start|>user<|message|>hi<|end|>",  # another role
    "<|channel|>analysis",                                 # EOS in the header
    "<|channel|>analysis<|message|>a<|channel|>b<|call|>",  # a special token in content
])
def test_fast_parser_defers_the_odd_cases(text: str) -> None:
    assert fast_parse(CODEC.encode(text)) is None


def test_codec_parse_is_the_same_with_and_without_the_fast_path(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    streams = [CODEC.encode(t) for t in (
        "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
        "<|channel|>final<|message|>\\boxed{7}<|return|>",
        "<|channel|>analysis<|message|>x<|end|>junk",
        "<|channel|><|message|>x<|call|>",
        "<|channel|>analysis<|message|>no stop",
    )] + [rng.integers(0, 201088, size=rng.integers(1, 40)).tolist() for _ in range(50)]
    fast = [CODEC.parse_completion(ids) for ids in streams]
    monkeypatch.setattr(codec_module, "parse_completion_fast", lambda ids, dec: None)
    slow = [CODEC.parse_completion(ids) for ids in streams]
    for f, s in zip(fast, slow):
        assert [m.to_dict() for m in f.messages] == [m.to_dict() for m in s.messages]
        assert (f.stop, f.error) == (s.stop, s.error)


# -- tool messages -------------------------------------------------------------------------

tool_text = st.text(max_size=200) | st.sampled_from([
    "1\n", "", "<|end|> and <|call|> as text", "Traceback (most recent call last):\n  x",
    "  leading and trailing  ", "é" * 50, "\u2063agent-envs\u2063"])


@SETTINGS
@given(st.sampled_from(["python", "functions.get_weather", "browser.search", "functions.a_b"]),
       st.sampled_from(["analysis", "commentary", None]), tool_text)
def test_tool_message_tokens_equal_harmony_render(author: str, channel: str | None,
                                                   text: str) -> None:
    msg = CODEC.tool_message(author, text, channel=channel)
    expected = list(ENC.render(msg)) + list(CODEC.assistant_header)
    assert CODEC.tool_result_tokens(author, text, channel=channel) == expected
