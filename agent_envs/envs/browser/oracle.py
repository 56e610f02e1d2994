"""An oracle for browser tasks: real harmony completions, driven through the real tool.

For each evidence page of the task, in order, it gets the page on screen (following the
link from the previous page when it is visible, else searching and clicking the result,
else opening the URL), then gets the evidence on screen (it is already, or ``find`` and
open the first match, or scroll), and cites the lines that show it. The final answer is
``Answer: X`` with those citations. Everything it cites is read from the tool's actual
output, so a tool that renders wrongly shows up as flagged citations or a failed episode.

It needs the task (answer, evidence pages), which a model would not: it exists to test the
environment end to end. ``wrong=True`` answers wrongly (reward must then be 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import openai_harmony as oh

from agent_envs.envs.browser.tasks import BrowserTask
from agent_envs.envs.browser.view import strip_links
from agent_envs.harmony import HarmonyCodec, get_codec, message_text

__all__ = ["BrowserOracle"]

_LINE = re.compile(r"^L(\d+): (.*)$", re.MULTILINE)
_CURSOR = re.compile(r"^\[(\d+)\]")
_SCROLLBAR = re.compile(r"\*\*viewing lines \[(\d+) - (\d+)\] of (\d+)\*\*")

_Script = Generator[str, str, None]


def _squash(text: str) -> str:
    return " ".join(strip_links(text).casefold().split())


def _call(function: str, args: dict[str, Any], note: str) -> str:
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>analysis to=browser.{function} code<|message|>"
            f"{json.dumps(args, ensure_ascii=False)}<|call|>")


def _locate(display: str, evidence: str) -> str | None:
    """A citation of the displayed lines that contain ``evidence``, or None."""
    m = _CURSOR.match(display)
    if m is None:
        return None
    cursor = int(m.group(1))
    lines = [(int(n), text) for n, text in _LINE.findall(display)]
    want = _squash(evidence)
    if not want:
        return None
    for k, (n, text) in enumerate(lines):
        if want in _squash(text):
            return f"【{cursor}†L{n}】"
        if k + 1 < len(lines) and want in _squash(text + lines[k + 1][1]):
            return f"【{cursor}†L{n}-L{lines[k + 1][0]}】"
    return None


def _link_id(display: str, title: str) -> int | None:
    m = re.search(r"【(\d+)†" + re.escape(title) + r"(?:†[^†】]*)?】", display)
    return int(m.group(1)) if m else None


class BrowserOracle:
    """Writes the next completion for an observation of the browser env.

    Args:
        codec: The harmony codec.
        wrong: Answer wrongly on purpose.
    """

    policy_id = "oracle"

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False) -> None:
        self.codec = codec or get_codec()
        self.wrong = wrong

    def act_text(self, obs: Sequence[int] | np.ndarray, task: BrowserTask) -> str:
        """The completion as text (harmony special tokens written out)."""
        results = [message_text(m) for m in self.codec.parse_conversation(obs)
                   if m.author.role == oh.Role.TOOL]
        script = self._script(task)
        action = next(script)
        for text in results:
            try:
                action = script.send(text)
            except StopIteration:  # pragma: no cover - the script always ends with a final
                break
        return action

    def act(self, obs: Sequence[int] | np.ndarray, task: BrowserTask) -> list[int]:
        """The completion as token ids."""
        return self.codec.encode(self.act_text(obs, task))

    def _script(self, task: BrowserTask) -> _Script:
        cites: list[str] = []
        display = ""
        for i, ev in enumerate(task.evidence):
            link = _link_id(display, ev["title"]) if i > 0 else None
            if link is not None:
                display = yield _call("open", {"id": link}, f"Following the link to "
                                                           f"{ev['title']}.")
            else:
                query = ev.get("query") or ev["title"]
                results = yield _call("search", {"query": query}, f"Searching for {query}.")
                link = _link_id(results, ev["title"])
                target: Any = link if link is not None else ev["url"]
                display = yield _call("open", {"id": target}, f"Opening {ev['title']}.")
            page_cursor = _CURSOR.match(display)
            cite = _locate(display, ev["text"])
            if cite is None and page_cursor is not None:
                display, cite = yield from self._seek(int(page_cursor.group(1)), ev["text"])
            if cite is not None:
                cites.append(cite)
        answer = task.answer
        if self.wrong:
            from agent_envs.oracle import perturb
            answer = perturb(answer.replace(",", "")) if answer.replace(",", "").isdigit() \
                else f"not {answer}"
        yield (f"<|channel|>analysis<|message|>The pages give the answer.<|end|>"
               f"<|start|>assistant<|channel|>final<|message|>Answer: {answer} "
               f"{' '.join(cites)}".rstrip() + "<|return|>")

    def _seek(self, cursor: int, evidence: str) -> Generator[str, str, tuple[str, str | None]]:
        """Bring ``evidence`` on screen on the page at ``cursor``: find, then scroll."""
        words = sorted(evidence.split(), key=len, reverse=True)
        for pattern in [evidence, *words[:1]]:
            found = yield _call("find", {"pattern": pattern, "cursor": cursor},
                                f"Looking for {pattern!r} on the page.")
            if "No `find` results" in found or not found.startswith("["):
                continue
            display = yield _call("open", {"id": 0}, "Opening the first match.")
            cite = _locate(display, evidence)
            if cite is not None:
                return display, cite
        display, loc = "", 0
        for _ in range(40):  # scroll through the page
            display = yield _call("open", {"cursor": cursor, "loc": loc}, "Scrolling on.")
            cite = _locate(display, evidence)
            bar = _SCROLLBAR.search(display)
            if cite is not None or bar is None or int(bar.group(2)) >= int(bar.group(3)):
                return display, cite
            loc = int(bar.group(2))  # overlap one line, in case the text wraps there
        return display, None
