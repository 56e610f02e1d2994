"""Readable transcripts of harmony conversations (for people, never for the model)."""

from __future__ import annotations

from collections.abc import Sequence

import openai_harmony as oh

from agent_envs.harmony import message_text

__all__ = ["format_message", "format_transcript"]

_COLORS = {"system": "90", "developer": "90", "user": "36", "assistant": "32", "tool": "33"}


def format_message(message: oh.Message, *, color: bool = False, max_chars: int = 2000) -> str:
    """One message as ``role[/name] [channel] -> recipient: text``."""
    role = message.author.role.value
    who = role if not message.author.name else f"{role}/{message.author.name}"
    head = who
    if message.channel:
        head += f" [{message.channel}]"
    if message.recipient:
        head += f" -> {message.recipient}"
    # System/developer content is structured (tools, instructions), not text.
    body = message_text(message) or f"({role} configuration)"
    if len(body) > max_chars:
        cut = len(body) - max_chars
        body = f"{body[: max_chars // 2]}\n[... {cut} chars ...]\n{body[-max_chars // 2:]}"
    if color:
        head = f"\033[{_COLORS.get(role, '0')}m{head}\033[0m"
    return f"{head}: {body}"


def format_transcript(messages: Sequence[oh.Message], *, color: bool = False,
                      include_system: bool = False) -> str:
    """A whole conversation, one message per paragraph."""
    lines = []
    for m in messages:
        if not include_system and m.author.role in (oh.Role.SYSTEM, oh.Role.DEVELOPER) \
                and not message_text(m).startswith("Format error"):
            continue
        lines.append(format_message(m, color=color))
    return "\n".join(lines)
