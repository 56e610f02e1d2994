"""One episode, as the viewer shows it: a list row and the decoded conversation.

Token ids are decoded with the real harmony codec (``agent_envs.harmony``): a segment's prompt
with ``parse_conversation``, each sampled turn with ``parse_completion`` (tolerant: a malformed or
cut completion shows what parsed and the error), and the env tokens after a turn (a tool's answer,
a format-error notice, the next ``<|start|>assistant``) with ``parse_conversation`` again. Nothing
here writes harmony by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import openai_harmony as oh

from agent_envs.harmony import END, HarmonyCodec, message_text

__all__ = [
    "TokenTable", "episode_row", "episode_view", "family_of", "first_user_text", "task_labels",
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


def _parse_env(codec: HarmonyCodec, ids: list[int], turn: int) -> list[dict[str, Any]]:
    """Env tokens after a turn: a tool result, a notice, or just the next assistant header."""
    # A completion cut by the length budget is closed with <|end|> before the env's notice.
    while ids and ids[0] == END:
        ids = ids[1:]
    if not ids or ids == list(codec.assistant_header):
        return []
    try:
        return [_message(m, "env", turn) for m in codec.parse_conversation(ids)]
    except Exception as e:  # noqa: BLE001 - shown as raw text, never a crash of the page
        return [_raw(codec.decode(ids), "env", turn, f"unparsed env tokens: {e}")]


def _prompt_messages(codec: HarmonyCodec, ids: list[int], first: bool) -> list[dict[str, Any]]:
    try:
        msgs = codec.parse_conversation(ids)
    except Exception as e:  # noqa: BLE001
        return [_raw(codec.decode(ids), "prompt", None, f"unparsed prompt: {e}")]
    out = [_message(m, "prompt", None) for m in msgs]
    if first:
        return out
    # A later segment re-renders the history; what is new starts after the last final answer
    # (the user's next turn, or the follow-up question).
    last_final = max((i for i, m in enumerate(msgs)
                      if m.author.role == oh.Role.ASSISTANT and m.channel == "final"), default=-1)
    for d in out[: last_final + 1]:
        d["history"] = True
    return out


def _rle(mask: Sequence[int]) -> list[int]:
    """Run lengths of the mask, starting with a run of 0s (possibly empty)."""
    runs, cur, n = [], 0, 0
    for v in mask:
        v = 1 if v else 0
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return runs


def episode_view(ep: Any, codec: HarmonyCodec, tokens: TokenTable | None = None
                 ) -> dict[str, Any]:
    """The decoded episode: its segments as messages (with each message's turn), the turns'
    tool outcomes and errors, the verdict and reward breakdown, and the raw token streams with
    their loss mask and the sampler's log-probs (prompt and env tokens have mask 0)."""
    segs = []
    stops: dict[int, str | None] = {}
    for k, seg in enumerate(ep.segments):
        msgs = _prompt_messages(codec, list(seg.prompt), first=k == 0)
        pos = 0
        for n, turn in enumerate(ep.turns):
            if turn.segment != k:
                continue
            if turn.start > pos:  # env tokens not attributed to a turn (never expected)
                msgs.extend(_parse_env(codec, list(seg.completion[pos:turn.start]), n - 1))
            parsed = codec.parse_completion(seg.completion[turn.start:turn.end])
            stops[n] = parsed.stop
            msgs.extend(_message(m, "model", n) for m in parsed.messages)
            if parsed.error and not parsed.messages:
                msgs.append(_raw(codec.decode(seg.completion[turn.start:turn.end]), "model", n,
                                 parsed.error))
            env_end = turn.end + turn.env_tokens
            msgs.extend(_parse_env(codec, list(seg.completion[turn.end:env_end]), n))
            pos = env_end
        ids = list(seg.prompt) + list(seg.completion)
        if tokens is not None:
            tokens.add(ids)
        mask = [0] * len(seg.prompt) + list(seg.loss_mask)
        sampled_lp = [_round(lp) for lp, m in zip(seg.logprobs, seg.loss_mask) if m]
        segs.append({"prompt_len": len(seg.prompt), "ids": ids, "mask": _rle(mask),
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


def first_user_text(view: dict[str, Any]) -> str:
    """The first user message of a decoded episode (the question), for the list's search."""
    for seg in view["segments"]:
        for m in seg["messages"]:
            if m["role"] == "user":
                return str(m["text"])
    return ""
