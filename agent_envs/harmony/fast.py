"""The env's hot path in harmony: parse well-formed completions and render tool results fast.

openai-harmony parses a completion by streaming every token through its Rust parser and
handing the result to Python as JSON that pydantic validates (~0.3 ms for a 30-token call),
and renders a message by serialising it to JSON for Rust (~0.1 ms). An RL env does both on
every step, for thousands of concurrent episodes.

:func:`parse_completion_fast` handles the completions a trained model writes (a header of
plain ASCII, content without special tokens, valid UTF-8) by cutting the token ids at the
harmony markers and decoding header and content once each. It follows openai-harmony 0.0.8's
``StreamableParser`` and ``parse_header_from_string`` rule for rule, and returns ``None``
(so the caller falls back to openai-harmony) for anything else: special tokens in content,
invalid UTF-8, non-ASCII headers, other roles, malformed headers. Property tests hold the two
parsers equal on generated and malformed token streams.

:class:`ToolMessageRenderer` renders a tool result as openai-harmony does (a header, then the
text encoded as ordinary text, then ``<|end|>``) from a header cached per (author, channel):
only the text is tokenized per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import openai_harmony as oh

from agent_envs.harmony.longtext import encode_ordinary

__all__ = ["ToolMessageRenderer", "parse_completion_fast"]

START, CONSTRAIN, CHANNEL, MESSAGE = 200006, 200003, 200005, 200008
MESSAGE_STOPS = frozenset({200002, 200007, 200012})  # <|return|>, <|end|>, <|call|>
FIRST_SPECIAL = 199998  # o200k_harmony: every id from here on is a special token
_HEADER_SPECIALS = frozenset({CHANNEL, CONSTRAIN})
_CHANNEL, _CONSTRAIN = "<|channel|>", "<|constrain|>"
# Printable ASCII and the space: Python's and Rust's whitespace rules agree on these.
_PLAIN_ASCII = re.compile(r"[\x20-\x7e]*")
_CHANNEL_END = re.compile(r"[ <]")

Header = tuple[str | None, str | None, str | None]  # channel, recipient, content type


def parse_header(text: str, role_known: bool) -> Header | None:
    """``parse_header_from_string`` of openai-harmony for an assistant header, or None.

    Args:
        text: The decoded header (what came between ``<|start|>``, or the start of the
            completion, and ``<|message|>``).
        role_known: True for the completion's first message (its role is given); False
            after a ``<|start|>``, where the header must name the role ``assistant``.

    Returns:
        (channel, recipient, content_type), or None where openai-harmony would raise or
        would see another role (the caller then lets openai-harmony decide).
    """
    if not _PLAIN_ASCII.fullmatch(text):
        return None
    channel = None
    idx = text.find(_CHANNEL)
    if idx >= 0:
        after = text[idx + len(_CHANNEL):]
        m = _CHANNEL_END.search(after)
        end = m.start() if m else len(after)
        if end == 0:
            return None  # "channel marker present but no channel value"
        channel = after[:end]
        text = text[:idx] + after[end:]
    text = text.strip()
    if _CONSTRAIN in text:
        text = text.replace(_CONSTRAIN, " " + _CONSTRAIN).strip()
    parts = text.split()
    if not role_known and (not parts or parts[0] != "assistant"):
        return None  # no role, or a role other than assistant
    if parts and parts[0] == "assistant":
        parts.pop(0)
    recipient = content_type = None
    if parts:
        n = len(parts)
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif n == 1:
            recipient = last
        else:
            content_type = last
            raw = parts.pop()
            recipient = raw.removeprefix("to=")
        if parts:
            return None  # "unexpected tokens remaining in message header"
    return channel, recipient, content_type


def _message(text: str, header: Header) -> oh.Message:
    channel, recipient, content_type = header
    # model_construct skips pydantic validation: every field is built right here.
    return oh.Message.model_construct(
        author=oh.Author.model_construct(role=oh.Role.ASSISTANT, name=None),
        content=[oh.TextContent.model_construct(text=text)],
        channel=channel, recipient=recipient, content_type=content_type)


def parse_completion_fast(ids: Sequence[int], decode_utf8: Callable[[list[int]], str]
                          ) -> list[oh.Message] | None:
    """The messages of an assistant completion, or None to defer to openai-harmony.

    Args:
        ids: The completion's token ids (what followed ``<|start|>assistant``), all inside
            the vocabulary.
        decode_utf8: openai-harmony's strict decoder (raises on invalid UTF-8).
    """
    ids = list(ids)
    n = len(ids)
    msgs: list[oh.Message] = []
    i = 0
    while i < n:
        role_known = i == 0
        if not role_known:
            if ids[i] != START:
                return None  # "Unexpected token ... while expecting start token"
            i += 1
        j = i
        while j < n and ids[j] != MESSAGE:
            if ids[j] >= FIRST_SPECIAL and ids[j] not in _HEADER_SPECIALS:
                return None
            j += 1
        if j == n:
            return None  # "Unexpected EOS while waiting for message header to complete"
        k = j + 1
        while k < n and ids[k] not in MESSAGE_STOPS:
            if ids[k] >= FIRST_SPECIAL:
                return None  # harmony decodes specials in content as text: rare, defer
            k += 1
        try:
            header = parse_header(decode_utf8(ids[i:j]), role_known)
            text = decode_utf8(ids[j + 1:k])
        except Exception:  # noqa: BLE001 - invalid UTF-8: harmony's replacement rules apply
            return None
        if header is None:
            return None
        msgs.append(_message(text, header))
        i = k + 1
    return msgs


class ToolMessageRenderer:
    """Renders ``<|start|>{author} to=assistant<|channel|>{channel}<|message|>TEXT<|end|>``
    exactly as openai-harmony renders that tool message, with the header cached.

    Args:
        encoding: The harmony encoding.
    """

    def __init__(self, encoding: oh.HarmonyEncoding) -> None:
        self.encoding = encoding
        self._headers: dict[tuple[str, str | None], tuple[list[int], list[int]]] = {}

    def _parts(self, author: str, channel: str | None) -> tuple[list[int], list[int]]:
        key = (author, channel)
        parts = self._headers.get(key)
        if parts is None:
            # Render the message around a marker text; what comes before and after the
            # marker's tokens is the header and the tail.
            marker = "\u2063agent-envs\u2063"
            mark = list(self.encoding.encode(marker, disallowed_special=()))
            full = self._render(author, marker, channel)
            at = next(p for p in range(len(full)) if full[p:p + len(mark)] == mark)
            parts = (full[:at], full[at + len(mark):])
            self._headers[key] = parts
        return parts

    def _render(self, author: str, text: str, channel: str | None) -> list[int]:
        msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, author), text)
        msg = msg.with_recipient("assistant")
        if channel:
            msg = msg.with_channel(channel)
        return list(self.encoding.render(msg))

    def render(self, author: str, text: str, channel: str | None) -> list[int]:
        """Token ids of the tool message, identical to openai-harmony's ``render``."""
        head, tail = self._parts(author, channel)
        # Long runs (a megabyte-long query echoed back) are encoded in chunks: openai-harmony's
        # tokenizer is quadratic on them and panics past ~1 MB (see harmony.longtext).
        return [*head, *encode_ordinary(self.encoding, text), *tail]
