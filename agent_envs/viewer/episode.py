"""One episode, as the viewer shows it: a list row and the decoded conversation.

Token ids are decoded with the real harmony codec (``agent_envs.harmony``): a segment's prompt
message by message with ``parse_conversation`` (each distinct message once, see
:class:`PartStore`), each sampled turn with ``parse_completion`` (tolerant: a malformed or
cut completion shows what parsed and the error), and the env tokens after a turn (a tool's answer,
a format-error notice, the next ``<|start|>assistant``) with ``parse_conversation`` again. Nothing
here writes harmony by hand.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import openai_harmony as oh

from agent_envs.harmony import END, START, HarmonyCodec, message_text

__all__ = [
    "PartStore", "TokenTable", "episode_row", "episode_view", "family_of", "first_user_text",
    "task_labels",
]

_VERSION = re.compile(r"-v\d+$")
_DIFFICULTY = re.compile(r"^d(\d+)$")
_SKIP_PARTS = re.compile(r"^(v\d+|train|test|val|dev|\d+)$")
_NUMBERED = re.compile(r"[_-]\d+$")


def family_of(env_id: str) -> str:
    """``python-tool-v0`` -> ``python-tool``."""
    return _VERSION.sub("", env_id or "")


def task_labels(task_id: str | None) -> tuple[str, str]:
    """(category, difficulty) read off a task id, for files that carry no suite manifest.

    Task ids are paths such as ``procedural/v0/friday13/d1/train/1190623118``: the category is
    the first part after the source and its version, the difficulty a ``dN`` part (``""`` when
    there is none). An id of one part (BFCL's ``simple_python_12``) is its own category, less
    its trailing number.
    """
    parts = [p for p in (task_id or "").split("/") if p]
    diff = next((p for p in parts if _DIFFICULTY.match(p)), "")
    rest = [p for p in parts[1:] if not _SKIP_PARTS.match(p) and p != diff]
    if rest:
        return rest[0], diff
    # One part, as BFCL's ids (``simple_python_12``): the id without its number.
    return (_NUMBERED.sub("", parts[0]) if parts else ""), diff


class TokenTable:
    """The text of every token id the page shows, decoded one id at a time (shared by all
    episodes of a page, so the raw-token view ships each distinct token once)."""

    def __init__(self, codec: HarmonyCodec) -> None:
        self._codec = codec
        self.text: dict[int, str] = {}

    def add(self, ids: Sequence[int]) -> None:
        """Decode the ids not seen yet."""
        for t in set(ids):
            if t not in self.text:
                self.text[t] = self._codec.decode([t])


def _tool_errors(ep: Any) -> int:
    return sum(1 for t in ep.turns if t.tool_outcome and not t.tool_outcome.get("ok", True))


def _verdict_label(ep: Any) -> str:
    if ep.infra_error is not None:
        return "infra"
    if ep.verdict is None:
        return "unfinished"
    return "correct" if ep.solved else "wrong"


def episode_row(ep: Any, index: int, *, category: str | None, question: str) -> dict[str, Any]:
    """The list entry of one episode (everything the list sorts, filters and searches on)."""
    cat, diff = task_labels(ep.task_id)
    verdict = ep.verdict or {}
    return {
        "i": index, "id": ep.episode_id, "task": ep.task_id or "", "family": family_of(ep.env_id),
        "cat": category if category is not None else cat, "diff": diff,
        "reward": _num(ep.reward), "verdict": _verdict_label(ep),
        "turns": len(ep.turns), "calls": sum(1 for t in ep.turns if t.tool_outcome),
        "tool_errors": _tool_errors(ep),
        "model_errors": sum(1 for t in ep.turns if t.model_error),
        "tokens": sum(len(s.prompt) + len(s.completion) for s in ep.segments),
        "sampled": ep.num_sampled_tokens, "infra": ep.infra_error,
        "trunc": ep.truncated_reason, "reason": str(verdict.get("reason") or ""),
        "q": question[:240],
    }


def _num(x: float | None) -> float | None:
    """JSON has no NaN: a missing or NaN number is null."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(x)


def _message(m: oh.Message, src: str, turn: int | None) -> dict[str, Any]:
    return {"role": m.author.role.value, "name": m.author.name, "channel": m.channel,
            "to": m.recipient, "ctype": m.content_type, "text": message_text(m),
            "src": src, "turn": turn}


def _raw(text: str, src: str, turn: int | None, error: str) -> dict[str, Any]:
    return {"role": "raw", "name": None, "channel": None, "to": None, "ctype": None,
            "text": text, "src": src, "turn": turn, "error": error}


def _parse_many(codec: HarmonyCodec, pieces: list[list[int]]
                ) -> list[list[oh.Message] | None]:
    """Parse runs of whole messages (each starting at ``<|start|>``), in one openai-harmony call
    where it can: a call costs ~1.5 ms before the first token, more than most tool answers.
    The messages are handed back to their runs by counting ``<|start|>``; when the counts
    disagree or the joined run does not parse, each run is parsed alone (None: it does not)."""
    counts = [p.count(START) for p in pieces]
    if len(pieces) > 1:
        try:
            msgs = codec.parse_conversation([t for p in pieces for t in p])
        except Exception:  # noqa: BLE001 - one run is malformed: find it below
            msgs = None
        if msgs is not None and len(msgs) == sum(counts):
            out, i = [], 0
            for c in counts:
                out.append(msgs[i:i + c])
                i += c
            return out
    parsed: list[list[oh.Message] | None] = []
    for p in pieces:
        try:
            parsed.append(codec.parse_conversation(p))
        except Exception:  # noqa: BLE001 - the caller shows it raw
            parsed.append(None)
    return parsed


def _env_piece(codec: HarmonyCodec, ids: Sequence[int]) -> list[int]:
    """The whole messages in the env tokens after a turn (a tool's answer, a notice): without
    the ``<|end|>`` that closes a cut completion, or the next ``<|start|>assistant``."""
    ids = list(ids)
    while ids and ids[0] == END:
        ids = ids[1:]
    header = list(codec.assistant_header)
    if ids[-len(header):] == header:
        ids = ids[: -len(header)]
    return ids


class PartStore:
    """The prompt messages of a page's episodes, each distinct one stored and decoded once.

    Prompts repeat: every episode of a suite opens with the same system message, the trials of
    a task share their whole prompt, BFCL's tasks share their function declarations (all of
    BFCL: 10.8M prompt tokens, 1.5M of them distinct). A prompt is cut at each ``<|start|>``
    into its messages; each message (a "part": its token ids and the message openai-harmony
    parses from them) is kept once, and an episode's segment lists the parts its prompt is
    made of. A prompt that does not cut into whole messages is one part, decoded as a whole.
    """

    def __init__(self, codec: HarmonyCodec, tokens: TokenTable | None = None) -> None:
        self._codec = codec
        self._tokens = tokens
        self._index: dict[tuple[int, ...], int] = {}
        self._bad: set[tuple[int, ...]] = set()
        self.parts: list[dict[str, Any]] = []
        self._add(list(codec.assistant_header), [])  # the open <|start|>assistant of a prompt

    def _add(self, ids: list[int], messages: list[dict[str, Any]]) -> int:
        key = tuple(ids)
        n = self._index.get(key)
        if n is None:
            n = self._index[key] = len(self.parts)
            self.parts.append({"ids": ids, "messages": messages})
            if self._tokens is not None:
                self._tokens.add(ids)
        return n

    @staticmethod
    def cut(ids: Sequence[int]) -> list[list[int]]:
        """A prompt cut before each ``<|start|>``."""
        ids = list(ids)
        cuts = np.flatnonzero(np.asarray(ids, dtype=np.int64) == START).tolist()
        if not cuts or cuts[0] != 0:
            cuts.insert(0, 0)
        return [ids[a:b] for a, b in zip(cuts, [*cuts[1:], len(ids)])]

    def missing(self, pieces: list[list[int]]) -> list[list[int]]:
        """The pieces not decoded yet (each once)."""
        seen: set[tuple[int, ...]] = set()
        out = []
        for p in pieces:
            key = tuple(p)
            if key not in self._index and key not in self._bad and key not in seen:
                seen.add(key)
                out.append(p)
        return out

    def learn(self, pieces: list[list[int]], parsed: list[list[oh.Message] | None]) -> None:
        """Keep the pieces that parsed into exactly one message."""
        for p, msgs in zip(pieces, parsed, strict=True):
            if msgs is not None and len(msgs) == 1:
                self._add(p, [_message(msgs[0], "prompt", None)])
            else:
                self._bad.add(tuple(p))

    def refs(self, ids: Sequence[int], pieces: list[list[int]]) -> list[int]:
        """The parts of a prompt already cut and learnt (or the prompt as one part)."""
        out = [self._index.get(tuple(p)) for p in pieces]
        if all(n is not None for n in out):
            return out  # type: ignore[return-value]
        whole = [int(t) for t in ids]
        if tuple(whole) in self._index:
            return [self._index[tuple(whole)]]
        try:
            msgs = [_message(m, "prompt", None) for m in self._codec.parse_conversation(whole)]
        except Exception as e:  # noqa: BLE001 - shown as raw text, never a crash of the page
            msgs = [_raw(self._codec.decode(whole), "prompt", None, f"unparsed prompt: {e}")]
        return [self._add(whole, msgs)]

    def add_prompt(self, ids: Sequence[int]) -> list[int]:
        """The parts of a prompt, in order (decoding the ones not seen before)."""
        pieces = self.cut(ids)
        new = self.missing(pieces)
        self.learn(new, _parse_many(self._codec, new))
        return self.refs(ids, pieces)

    def expand(self, view: dict[str, Any]) -> dict[str, Any]:
        """A view with each segment's parts put back (as the page's script does): ``ids`` (the
        whole token stream) and ``messages`` (prompt messages first, the history of a later
        segment marked ``history``)."""
        segs = []
        for seg in view["segments"]:
            parts = [self.parts[n] for n in seg["parts"]]
            prompt = [dict(m) for p in parts for m in p["messages"]]
            for m in prompt[: seg["history"]]:
                m["history"] = True
            segs.append(dict(seg, ids=[t for p in parts for t in p["ids"]] + seg["completion"],
                             messages=prompt + seg["messages"]))
        return dict(view, segments=segs)


def _history(parts: list[dict[str, Any]]) -> int:
    """How many prompt messages of a later segment re-render the history: those up to the last
    final answer (what follows, the user's next turn or a follow-up question, is new)."""
    msgs = [m for p in parts for m in p["messages"]]
    return max((i + 1 for i, m in enumerate(msgs)
                if m["role"] == "assistant" and m["channel"] == "final"), default=0)


def _rle(mask: Sequence[int]) -> list[int]:
    """Run lengths of the mask, starting with a run of 0s (possibly empty)."""
    m = np.asarray(mask, dtype=np.int8) != 0
    if not m.size:
        return [0]
    edges = np.flatnonzero(m[1:] != m[:-1]) + 1
    bounds = np.concatenate(([0], edges, [m.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if m[0] else runs


def episode_view(ep: Any, codec: HarmonyCodec, parts: PartStore,
                 tokens: TokenTable | None = None) -> dict[str, Any]:
    """The decoded episode: the turns as messages (each with its turn), the turns' tool outcomes
    and errors, the verdict and reward breakdown, and the token streams with their loss mask
    and the sampler's log-probs (prompt and env tokens have mask 0).

    Each segment holds its prompt as ``parts`` (indices into ``parts``, see
    :meth:`PartStore.expand`), its ``completion`` ids, the ``mask`` as run lengths over prompt
    and completion, the ``logprobs`` of the sampled tokens, and the ``messages`` after the
    prompt (``src`` ``model`` or ``env``).
    """
    # Every message the env wrote (new prompt messages, the answers after each turn) is parsed
    # in one call; the sampled turns go through the codec's tolerant completion parser.
    cuts = [parts.cut(seg.prompt) for seg in ep.segments]
    new = parts.missing([p for pieces in cuts for p in pieces])
    env: dict[int, list[int]] = {}
    for n, t in enumerate(ep.turns):
        piece = _env_piece(codec, ep.segments[t.segment].completion[t.end:t.end + t.env_tokens])
        if piece:
            env[n] = piece
    parsed = _parse_many(codec, new + list(env.values()))
    parts.learn(new, parsed[: len(new)])
    env_msgs = dict(zip(env, parsed[len(new):]))

    segs = []
    stops: dict[int, str | None] = {}
    for k, seg in enumerate(ep.segments):
        refs = parts.refs(seg.prompt, cuts[k])
        msgs: list[dict[str, Any]] = []
        for n, turn in enumerate(ep.turns):
            if turn.segment != k:
                continue
            sampled = seg.completion[turn.start:turn.end]
            completion = codec.parse_completion(sampled)
            stops[n] = completion.stop
            msgs.extend(_message(m, "model", n) for m in completion.messages)
            if completion.error and not completion.messages:
                msgs.append(_raw(codec.decode(sampled), "model", n, completion.error))
            if n in env:
                got = env_msgs[n]
                msgs.extend([_message(m, "env", n) for m in got] if got is not None else
                            [_raw(codec.decode(env[n]), "env", n, "unparsed env tokens")])
        if tokens is not None:
            tokens.add(seg.completion)
        mask = [0] * len(seg.prompt) + list(seg.loss_mask)
        sampled_lp = [_round(lp) for lp, m in zip(seg.logprobs, seg.loss_mask) if m]
        segs.append({"parts": refs, "history": _history([parts.parts[n] for n in refs])
                     if k else 0, "prompt_len": len(seg.prompt),
                     "completion": [int(t) for t in seg.completion], "mask": _rle(mask),
                     "logprobs": sampled_lp, "messages": msgs})
    turns = [{"segment": t.segment, "start": t.start, "end": t.end, "env_tokens": t.env_tokens,
              "finish": t.finish_reason, "stop": stops.get(n), "tool": t.tool_outcome,
              "model_error": t.model_error, "policy_s": _num(t.policy_s),
              "env_s": _num(t.env_s)} for n, t in enumerate(ep.turns)]
    return {
        "id": ep.episode_id, "task": ep.task_id, "env": ep.env_id, "policy": ep.policy_id,
        "policy_version": ep.policy_version, "seed": ep.seed, "sample_seed": ep.sample_seed,
        "group": ep.group_id, "index": ep.index, "reward": _num(ep.reward),
        "components": {k: _num(v) for k, v in ep.reward_components.items()},
        "verdict": ep.verdict, "label": _verdict_label(ep), "infra": ep.infra_error,
        "terminated": ep.terminated, "truncated": ep.truncated, "trunc": ep.truncated_reason,
        "times": {"env_s": _num(ep.env_s), "policy_s": _num(ep.policy_s),
                  "total_s": _num(ep.total_s)},
        "meta": ep.meta, "segments": segs, "turns": turns,
    }


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)


def first_user_text(view: dict[str, Any], parts: PartStore) -> str:
    """The first user message of a decoded episode (the question), for the list's search."""
    for seg in view["segments"]:
        prompt = (m for n in seg["parts"] for m in parts.parts[n]["messages"])
        for m in itertools.chain(prompt, seg["messages"]):
            if m["role"] == "user":
                return str(m["text"])
    return ""
