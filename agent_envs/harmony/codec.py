"""The harmony codec: build, render and parse gpt-oss conversations as token ids.

Everything goes through ``openai-harmony``; nothing here hand-writes the format
except the two-token ``<|start|>assistant`` header the library itself renders
for a completion prompt (taken from the library once, not typed in).

Two rules the environments depend on:

* **Prefix extension.** The env never decodes and re-encodes what the model
  sampled. :meth:`HarmonyCodec.tool_result_tokens` returns only the tokens to
  *append* after a completion (the tool's message, then ``<|start|>assistant``).
* **Analysis dropping is explicit.** ``openai-harmony``'s automatic dropping
  only removes analysis before the first final message and also applies to
  training renders, so :meth:`HarmonyCodec.render_prompt` turns it off and
  applies :func:`drop_analysis` with a named policy instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import openai_harmony as oh

from agent_envs.harmony.fast import ToolMessageRenderer, parse_completion_fast
from agent_envs.harmony.longtext import encode_ordinary, encode_with_specials, has_long_run
from agent_envs.harmony.vocab import load_encoding

__all__ = [
    "CALL", "END", "ENDOFTEXT", "FIRST_SPECIAL_ID", "RETURN", "START", "STOP_TOKEN_IDS",
    "VOCAB_SIZE",
    "AnalysisPolicy", "FunctionTool", "HarmonyCodec", "ParsedCompletion", "SystemConfig",
    "drop_analysis", "get_codec", "message_text",
]

RETURN = 200002  # <|return|>: the model finished its turn with a final answer
CALL = 200012  # <|call|>: the model called a tool and waits for its result
END = 200007  # <|end|>: ends a message inside one completion
START = 200006  # <|start|>
STOP_TOKEN_IDS: tuple[int, int] = (RETURN, CALL)
VOCAB_SIZE = 201088  # gpt-oss embedding rows (o200k_harmony plus reserved ids)
FIRST_SPECIAL_ID = 199998  # <|startoftext|>: the o200k ids from here on are special tokens
ENDOFTEXT = 199999  # <|endoftext|>: gpt-oss's pad token

ReasoningEffort = Literal["low", "medium", "high"]
AnalysisPolicy = Literal["drop_completed_turns", "keep_all"]
StopKind = Literal["return", "call", "end"]

_STOP_KINDS: dict[int, StopKind] = {RETURN: "return", CALL: "call", END: "end"}
_EFFORT = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM,
           "high": oh.ReasoningEffort.HIGH}


@dataclass(frozen=True, kw_only=True)
class FunctionTool:
    """A developer function, described by JSON Schema.

    Attributes:
        name: Function name; the model calls it as ``functions.NAME``.
        description: What it does (the model reads this).
        parameters: JSON Schema of its single object argument.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object",
                                                                   "properties": {}})

    @classmethod
    def from_openai(cls, spec: Mapping[str, Any]) -> FunctionTool:
        """From an OpenAI-style tool dict (``{"type": "function", "function": {...}}`` or
        the inner ``{"name", "description", "parameters"}``)."""
        inner = spec.get("function", spec)
        if "name" not in inner:
            raise ValueError(
                f"function tool spec has no 'name': {json.dumps(spec)[:200]}; expected "
                '{"name": ..., "description": ..., "parameters": {JSON Schema}}'
            )
        return cls(name=inner["name"], description=inner.get("description", ""),
                   parameters=inner.get("parameters") or {"type": "object", "properties": {}})


@dataclass(frozen=True, kw_only=True)
class SystemConfig:
    """What goes into the system message.

    Attributes:
        reasoning_effort: ``low``, ``medium`` or ``high``.
        knowledge_cutoff: Shown as "Knowledge cutoff: ..." (gpt-oss: 2024-06).
        conversation_date: "Current date: ..."; None leaves it out, which keeps
            prompts identical across days (reproducible episodes).
        model_identity: Overrides the default identity line when set.
        python_tool: Declare the built-in ``python`` tool.
        python_description: Overrides the python tool's description (e.g. to
            state the real timeout); None keeps openai-harmony's text.
        browser_tool: Declare the built-in ``browser`` tool.
        tools: Built-in tool namespaces to declare (what the envs' tool parts give), after
            the two flags above. openai-harmony renders them in its own order (``browser``
            before ``python``, as the reference ``gpt_oss/chat.py`` declares them).
    """

    reasoning_effort: ReasoningEffort = "medium"
    knowledge_cutoff: str = "2024-06"
    conversation_date: str | None = None
    model_identity: str | None = None
    python_tool: bool = False
    python_description: str | None = None
    browser_tool: bool = False
    tools: tuple[oh.ToolNamespaceConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.reasoning_effort not in _EFFORT:
            raise ValueError(
                f"reasoning_effort must be one of {sorted(_EFFORT)}, got {self.reasoning_effort!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ParsedCompletion:
    """A sampled completion, parsed tolerantly.

    Attributes:
        messages: The messages that parsed (possibly fewer than the model meant
            when ``error`` is set).
        stop: How the completion ended: ``"return"``, ``"call"`` or ``"end"``;
            None when the last token is not a stop token (cut by a length limit).
        error: A short description of a format error, else None.
    """

    messages: tuple[oh.Message, ...]
    stop: StopKind | None
    error: str | None = None

    @property
    def truncated(self) -> bool:
        """True when generation was cut before a stop token."""
        return self.stop is None

    @property
    def last(self) -> oh.Message | None:
        """The last parsed message, if any."""
        return self.messages[-1] if self.messages else None


def message_text(message: oh.Message) -> str:
    """The concatenated text content of a message."""
    out = []
    for c in message.content:
        text = getattr(c, "text", None)
        if text is not None:
            out.append(text)
    return "".join(out)


def drop_analysis(messages: Sequence[oh.Message],
                  policy: AnalysisPolicy = "drop_completed_turns") -> list[oh.Message]:
    """Apply the analysis-dropping policy to a conversation history.

    ``drop_completed_turns`` (what gpt-oss was trained with): every message on
    the ``analysis`` channel (the assistant's chain of thought, python calls and
    their results, which also live on ``analysis``) that comes *before the last
    assistant ``final`` message* is removed: that reasoning belongs to turns
    that are finished. Analysis after the last final (the turn in progress) is
    kept, so a tool-calling chain keeps its own reasoning. Commentary messages
    (function calls and their results, preambles) are always kept.

    ``keep_all``: nothing is removed.
    """
    if policy == "keep_all":
        return list(messages)
    if policy != "drop_completed_turns":
        raise ValueError(
            f"unknown analysis policy {policy!r}; use 'drop_completed_turns' or 'keep_all'"
        )
    last_final = -1
    for i, m in enumerate(messages):
        if m.author.role == oh.Role.ASSISTANT and m.channel == "final":
            last_final = i
    return [m for i, m in enumerate(messages) if not (i < last_final and m.channel == "analysis")]


def _mark_long_texts(messages: Sequence[oh.Message]
                     ) -> tuple[list[oh.Message], list[tuple[str, str]]]:
    """``messages`` with every text that has a very long run replaced by a unique marker, and
    the (marker, text) pairs."""
    out: list[oh.Message] = []
    pairs: list[tuple[str, str]] = []
    for m in messages:
        if not any(isinstance(c, oh.TextContent) and has_long_run(c.text) for c in m.content):
            out.append(m)
            continue
        content: list[Any] = []
        for c in m.content:
            if isinstance(c, oh.TextContent) and has_long_run(c.text):
                marker = f"\u2063agent-envs-long-text-{len(pairs)}\u2063"
                pairs.append((marker, c.text))
                c = oh.TextContent(text=marker)
            content.append(c)
        out.append(m.model_copy(update={"content": content}))
    return out, pairs


class HarmonyCodec:
    """Renders and parses gpt-oss conversations. Stateless; share one per process."""

    def __init__(self, encoding: oh.HarmonyEncoding | None = None) -> None:
        self.encoding = encoding if encoding is not None else load_encoding()
        empty = oh.Conversation.from_messages([])
        self.assistant_header: tuple[int, ...] = tuple(
            self.encoding.render_conversation_for_completion(empty, oh.Role.ASSISTANT)
        )
        self._tool_renderer = ToolMessageRenderer(self.encoding)
        self._decode_utf8 = self.encoding.decode_utf8

    # -- building messages --------------------------------------------------

    def system_message(self, config: SystemConfig | None = None) -> oh.Message:
        """The system message for ``config`` (defaults: medium effort, no date, no tools)."""
        cfg = config or SystemConfig()
        content = (oh.SystemContent.new()
                   .with_reasoning_effort(_EFFORT[cfg.reasoning_effort])
                   .with_knowledge_cutoff(cfg.knowledge_cutoff))
        if cfg.conversation_date is not None:
            content = content.with_conversation_start_date(cfg.conversation_date)
        if cfg.model_identity is not None:
            content = content.with_model_identity(cfg.model_identity)
        if cfg.python_tool:
            ns = oh.ToolNamespaceConfig.python()
            if cfg.python_description is not None:
                ns = oh.ToolNamespaceConfig(name="python", description=cfg.python_description,
                                            tools=[])
            content = content.with_tools(ns)
        if cfg.browser_tool:
            content = content.with_tools(oh.ToolNamespaceConfig.browser())
        for ns in cfg.tools:
            content = content.with_tools(ns)
        return oh.Message.from_role_and_content(oh.Role.SYSTEM, content)

    def developer_message(self, instructions: str | None = None,
                          functions: Iterable[FunctionTool | Mapping[str, Any]] = ()
                          ) -> oh.Message:
        """The developer message: instructions and ``namespace functions`` tools."""
        content = oh.DeveloperContent.new()
        if instructions:
            content = content.with_instructions(instructions)
        tools = [f if isinstance(f, FunctionTool) else FunctionTool.from_openai(f)
                 for f in functions]
        if tools:
            content = content.with_function_tools([
                oh.ToolDescription.new(t.name, t.description, parameters=dict(t.parameters))
                for t in tools
            ])
        return oh.Message.from_role_and_content(oh.Role.DEVELOPER, content)

    @staticmethod
    def user_message(text: str) -> oh.Message:
        """A user message."""
        return oh.Message.from_role_and_content(oh.Role.USER, text)

    @staticmethod
    def tool_message(tool: str, text: str, *, channel: str | None = "analysis") -> oh.Message:
        """A tool result: authored by ``tool`` (``python``, ``functions.NAME``,
        ``browser.open``), addressed to the assistant, on the channel of the call."""
        msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, tool), text)
        msg = msg.with_recipient("assistant")
        return msg.with_channel(channel) if channel else msg

    # -- rendering ------------------------------------------------------------

    def render_prompt(self, messages: Sequence[oh.Message],
                      policy: AnalysisPolicy = "drop_completed_turns") -> list[int]:
        """Token ids of the conversation followed by ``<|start|>assistant``.

        Analysis is dropped by ``policy`` (see :func:`drop_analysis`), never by
        the library's implicit rule.
        """
        kept, long_texts = _mark_long_texts(drop_analysis(messages, policy))
        conv = oh.Conversation.from_messages(kept)
        tokens = list(self.encoding.render_conversation_for_completion(
            conv, oh.Role.ASSISTANT, oh.RenderConversationConfig(auto_drop_analysis=False)))
        # Texts with very long runs were rendered as markers (openai-harmony's tokenizer is
        # quadratic on them and panics past ~1 MB); their tokens go where the markers are.
        for marker, text in long_texts:
            mark = encode_ordinary(self.encoding, marker)
            at = next(i for i in range(len(tokens) - len(mark), -1, -1)
                      if tokens[i:i + len(mark)] == mark)
            tokens[at:at + len(mark)] = encode_ordinary(self.encoding, text)
        return tokens

    def render_message(self, message: oh.Message) -> list[int]:
        """Token ids of one message (``<|start|>...<|end|>``)."""
        return list(self.encoding.render(message))

    def tool_result_tokens(self, tool: str, text: str, *, channel: str | None = "analysis"
                           ) -> list[int]:
        """The env tokens appended after a tool call: the result, then ``<|start|>assistant``.

        Identical to rendering :meth:`tool_message` with openai-harmony, but only the text is
        tokenized: the message header is rendered once per (tool, channel) and cached.
        """
        tokens = self._tool_renderer.render(tool, text, channel)
        tokens.extend(self.assistant_header)
        return tokens

    def message_tokens_then_assistant(self, message: oh.Message) -> list[int]:
        """Any message followed by ``<|start|>assistant`` (e.g. a format-error notice)."""
        return self.render_message(message) + list(self.assistant_header)

    # -- text <-> tokens ------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Encode text, allowing harmony's special tokens (actions given as text).

        Text with very long runs (a megabyte of ``#``), on which openai-harmony's tokenizer
        is quadratic and then panics, is encoded with long runs in chunks (see
        :mod:`agent_envs.harmony.longtext`): the same text, never a panic.
        """
        return encode_with_specials(self.encoding, text)

    def decode(self, tokens: Sequence[int] | np.ndarray) -> str:
        """Decode tolerantly: invalid ids and broken UTF-8 never raise."""
        ids = [int(t) for t in tokens]
        try:
            return self.encoding.decode(ids)
        except Exception:  # noqa: BLE001 - any id the library rejects becomes a marker
            parts = []
            for t in ids:
                try:
                    parts.append(self.encoding.decode([t]))
                except Exception:  # noqa: BLE001
                    parts.append(f"<|invalid:{t}|>")
            return "".join(parts)

    # -- parsing --------------------------------------------------------------

    def parse_completion(self, tokens: Sequence[int] | np.ndarray) -> ParsedCompletion:
        """Parse sampled completion tokens (what followed ``<|start|>assistant``).

        Tolerant: ``to=`` before or after the channel is accepted; a completion
        without a stop token parses as if complete and reports ``stop=None``;
        anything unparseable becomes ``error`` (never an exception), with the
        messages that did parse before the fault.
        """
        ids = tokens.tolist() if isinstance(tokens, np.ndarray) else [int(t) for t in tokens]
        if not ids:
            return ParsedCompletion(messages=(), stop=None, error="empty completion")
        if not 0 <= min(ids) <= max(ids) < VOCAB_SIZE:
            bad = next(t for t in ids if not 0 <= t < VOCAB_SIZE)
            return ParsedCompletion(messages=(), stop=None,
                                    error=f"token id {bad} is outside the vocabulary "
                                          f"[0, {VOCAB_SIZE})")
        stop: StopKind | None = _STOP_KINDS.get(ids[-1])
        fast = parse_completion_fast(ids, self._decode_utf8)
        if fast is not None:
            msgs = tuple(fast)
        else:
            try:
                msgs = tuple(self.encoding.parse_messages_from_completion_tokens(
                    ids, oh.Role.ASSISTANT))
            except Exception as e:  # noqa: BLE001 - HarmonyError, or a decode error on odd ids
                partial = self._parse_prefix(ids)
                return ParsedCompletion(messages=tuple(partial), stop=stop,
                                        error=f"malformed harmony: {e}")
        if not msgs:
            return ParsedCompletion(messages=(), stop=stop, error="no message in completion")
        for m in msgs:
            if m.author.role != oh.Role.ASSISTANT:
                return ParsedCompletion(
                    messages=msgs, stop=stop,
                    error=f"the completion contains a {m.author.role.value} message; "
                          f"the assistant may only write assistant messages")
        return ParsedCompletion(messages=msgs, stop=stop)

    def _parse_prefix(self, ids: list[int]) -> list[oh.Message]:
        """The whole messages a streaming parser accepted before it hit a fault."""
        parser = oh.StreamableParser(self.encoding, oh.Role.ASSISTANT)
        try:
            for t in ids:
                parser.process(t)
        except Exception:  # noqa: BLE001, S110 - a malformed tail: keep what parsed
            pass
        return list(parser.messages)

    def parse_conversation(self, tokens: Sequence[int] | np.ndarray) -> list[oh.Message]:
        """Parse a whole token stream (an observation, or an observation plus a
        completion) back into messages. A trailing ``<|start|>assistant`` (the
        open prompt header) is ignored.

        Use this on env output, which is valid by construction; completions
        from a model go through :meth:`parse_completion` instead.

        Raises:
            openai_harmony.HarmonyError: the stream is not valid harmony.
        """
        ids = [int(t) for t in tokens]
        header = list(self.assistant_header)
        if ids[-len(header):] == header:
            ids = ids[: -len(header)]
        return list(self.encoding.parse_messages_from_completion_tokens(ids, None))


_CODEC: HarmonyCodec | None = None


def get_codec() -> HarmonyCodec:
    """The process-wide codec (loads the vocabulary on first use)."""
    global _CODEC
    if _CODEC is None:
        _CODEC = HarmonyCodec()
    return _CODEC
