"""The multi-tool family's oracle: it uses the tools as a model would.

For a research task it searches for the district, opens its page (and the continued list),
follows each station's link, scrolls each table (and its later-records page) until the
question's years are on screen, reads the numbers from what the browser *showed*, then
writes a python cell that holds those numbers and computes the answer, and answers with what
python printed. For a data-ops task it looks the customer up, pages through the invoice
list, fetches every invoice, then computes in python over the fetched records. Nothing it
computes with comes from the task object: the task gives it only what the prompt says (the
district or customer, the years or dates, the kind of question). So a tool that renders or
runs wrongly shows up as a wrong answer.

Denied a tool (the env answers "there is no tool ..."), it goes on as a model would:
without the browser or the functions it has no data and answers with an estimate; without
python it works the numbers by hand, which is exact for short sums only
(:data:`BY_HAND_NUMBERS` numbers or fewer) and otherwise an estimate from values rounded to
two significant figures. ``wrong=True`` answers off by one (reward 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import openai_harmony as oh

from agent_envs.envs.agent.dataops import DataOpsTask
from agent_envs.envs.agent.research import ResearchTask
from agent_envs.harmony import HarmonyCodec, get_codec, message_text
from agent_envs.oracle import perturb

__all__ = ["BY_HAND_NUMBERS", "AgentOracle"]

#: How many numbers the oracle adds up exactly without python (a short sum a model can do).
BY_HAND_NUMBERS = 6
_NO_TOOL = "Error: there is no tool"
_LINK = re.compile(r"【(\d+)†([^†】]+)(?:†[^】]*)?】")
_CURSOR = re.compile(r"^\[(\d+)\]")
_SCROLLBAR = re.compile(r"\*\*viewing lines \[(\d+) - (\d+)\] of (\d+)\*\*")
_ROW = re.compile(r"^L\d+: (\d{4}) ([\d,]+)\s*$", re.MULTILINE)

_Script = Generator[str, str, None]


def _browse(function: str, args: dict[str, Any], note: str) -> str:
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>analysis to=browser.{function} code<|message|>"
            f"{json.dumps(args, ensure_ascii=False)}<|call|>")


def _function(name: str, args: dict[str, Any], note: str) -> str:
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
            f"{json.dumps(args, ensure_ascii=False)}<|call|>")


def _python(code: str, note: str) -> str:
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>analysis to=python code<|message|>{code}<|call|>")


def _missing(result: str) -> bool:
    return result.startswith(_NO_TOOL)


def _sig2(value: int) -> int:
    """``value`` rounded to two significant figures (a by-hand estimate)."""
    digits = len(str(abs(value)))
    return int(round(value, 2 - digits)) if digits > 2 else value


def _by_hand(kind: str, groups: dict[str, dict[Any, int]], exact: bool) -> int:
    """The answer worked out without python: exact, or from rounded values."""
    def v(x: int) -> int:
        return x if exact else _sig2(x)

    if kind in ("total", "discounted_total"):
        return sum(v(x) for g in groups.values() for x in g.values())
    if kind == "peak":
        keys = sorted({k for g in groups.values() for k in g})
        return max(sum(v(g.get(k, 0)) for g in groups.values()) for k in keys)
    if kind == "range":
        totals = [sum(v(x) for x in g.values()) for g in groups.values()]
        return max(totals) - min(totals)
    if kind == "largest":
        return max(sum(v(x) for x in g.values()) for g in groups.values())
    raise ValueError(kind)


class AgentOracle:
    """Writes the next completion for an observation of the agent env (see the module).

    Args:
        codec: The harmony codec.
        wrong: Answer off by one on purpose (reward must then be 0).
    """

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False) -> None:
        self.codec = codec or get_codec()
        self.wrong = wrong

    def act_text(self, obs: Sequence[int] | np.ndarray, task: Any) -> str:
        """The completion as text: the script replayed over the tool results so far."""
        results = [message_text(m) for m in self.codec.parse_conversation(obs)
                   if m.author.role == oh.Role.TOOL]
        script = self._research(task) if isinstance(task, ResearchTask) else self._dataops(task)
        action = next(script)
        for text in results:
            try:
                action = script.send(text)
            except StopIteration:  # pragma: no cover - every script ends with a final
                break
        return action

    def act(self, obs: Sequence[int] | np.ndarray, task: Any) -> list[int]:
        """The completion as token ids."""
        return self.codec.encode(self.act_text(obs, task))

    # -- the last steps, shared ---------------------------------------------------------

    def _final(self, answer: str, note: str) -> str:
        if self.wrong:
            answer = perturb(answer)
        return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
                f"<|channel|>final<|message|>The answer is \\boxed{{{answer}}}.<|return|>")

    def _compute(self, code: str, kind: str, groups: dict[str, dict[Any, int]]) -> _Script:
        """Run ``code`` in python and answer with its last line; without python, by hand."""
        out = yield _python(code, "I will add these up exactly with python.")
        if not _missing(out):
            lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
            yield self._final(lines[-1] if lines else "0", "Python gave the result.")
            return
        n = sum(len(g) for g in groups.values())
        exact = n <= BY_HAND_NUMBERS
        answer = _by_hand(kind, groups, exact)
        yield self._final(str(answer), "No python here: I worked it out by hand"
                          + ("." if exact else ", roughly (too many numbers to be exact)."))

    # -- research ---------------------------------------------------------------------

    def _research(self, task: ResearchTask) -> _Script:
        title = f"{task.district} District"
        results = yield _browse("search", {"query": f"{title} gauging stations"},
                                f"I will look up the {title} and its stations.")
        if _missing(results):
            # No browser: no data. Estimate from a typical six-figure flow.
            n_years = task.years[1] - task.years[0] + 1
            guess = {"total": 5 * n_years * 500_000, "peak": 5 * 500_000,
                     "range": n_years * 250_000}[task.kind]
            yield self._final(str(guess), "I cannot browse; this is an estimate.")
            return
        link = next((int(i) for i, t in _LINK.findall(results) if t.strip() == title), None)
        page = yield _browse("open", {"id": link if link is not None else
                                      "https://atlas.example/wiki/"
                                      + title.replace(" ", "_")}, f"Opening {title}.")
        stations: list[tuple[int, int, str]] = []  # (cursor, link id, station name)
        while True:
            cursor = int(_CURSOR.match(page).group(1)) if _CURSOR.match(page) else -1
            more = None
            for i, text in _LINK.findall(page):
                if text.startswith("more stations of"):
                    more = int(i)
                elif not text.endswith("District"):
                    stations.append((cursor, int(i), text.strip()))
            if more is None:
                break
            page = yield _browse("open", {"id": more, "cursor": cursor},
                                 "The list goes on; opening the rest.")
        years = range(task.years[0], task.years[1] + 1)
        flows: dict[str, dict[int, int]] = {}
        for cursor, link_id, name in stations:
            rows = flows.setdefault(name, {})
            display = yield _browse("open", {"id": link_id, "cursor": cursor},
                                    f"Opening {name}.")
            yield from self._read_table(display, rows, years, name)
        code = ("flows = {\n" + "".join(
            f"    {name!r}: {{{', '.join(f'{y}: {v}' for y, v in sorted(r.items()))}}},\n"
            for name, r in flows.items()) + "}\n"
            f"years = range({task.years[0]}, {task.years[1]} + 1)\n"
            + {"total": "print(sum(f[y] for f in flows.values() for y in years))",
               "peak": "print(max(sum(f[y] for f in flows.values()) for y in years))",
               "range": "totals = [sum(f[y] for y in years) for f in flows.values()]\n"
                        "print(max(totals) - min(totals))"}[task.kind] + "\n")
        groups = {n: {y: v for y, v in r.items() if y in years} for n, r in flows.items()}
        yield from self._compute(code, task.kind, groups)

    def _read_table(self, display: str, rows: dict[int, int], years: range, name: str
                    ) -> Generator[str, str, None]:
        """Read the flow rows of a station page: scroll until its years are on screen, and
        follow the later-records link when the table goes on there."""
        cursor = int(_CURSOR.match(display).group(1)) if _CURSOR.match(display) else -1
        records = None
        for _ in range(20):
            rows.update((int(y), int(v.replace(",", ""))) for y, v in _ROW.findall(display))
            for i, text in _LINK.findall(display):
                if text == "later records":
                    records = int(i)
            if all(y in rows for y in years):
                return
            bar = _SCROLLBAR.search(display)
            if bar is None or int(bar.group(2)) >= int(bar.group(3)):
                break
            display = yield _browse("open", {"cursor": cursor, "loc": int(bar.group(2))},
                                    f"Scrolling down {name} to its table.")
        if records is not None:
            later = yield _browse("open", {"id": records, "cursor": cursor},
                                  f"The later years of {name} are on another page.")
            yield from self._read_table(later, rows, years, name)

    # -- data ops ---------------------------------------------------------------------

    def _dataops(self, task: DataOpsTask) -> _Script:
        name = task.customer
        found = yield _function("find_customer", {"name": name},
                                f"I will look up {name}'s customer id and discount.")
        if _missing(found):
            yield self._final("0", "I cannot reach the ledger, so I cannot know this.")
            return
        match = next(m for m in json.loads(found) if m["name"] == name)
        cid, discount = match["customer_id"], match["discount_percent"]
        ids: list[str] = []
        page, pages = 1, 1
        while page <= pages:
            listing = json.loads((yield _function("list_invoices",
                                                  {"customer_id": cid, "page": page},
                                                  f"Listing invoices, page {page}.")))
            ids += listing["invoice_ids"]
            pages = int(listing["pages"])
            page += 1
        invoices = []
        for iid in ids:
            invoices.append(json.loads((yield _function("get_invoice", {"invoice_id": iid},
                                                        f"Fetching {iid}."))))
        a, b = task.dates
        code = (f"invoices = {json.dumps(invoices)}\n"
                f"discount = {discount}\n"
                f"paid = [i for i in invoices if i['status'] == 'paid' and "
                f"{a!r} <= i['date'] <= {b!r}]\n"
                "totals = [sum(l['quantity'] * l['unit_price_cents'] for l in i['lines']) "
                "for i in paid]\n"
                + {"total": "print(sum(totals))", "largest": "print(max(totals))",
                   "discounted": "print(sum(t * (100 - discount) // 100 for t in totals))"
                   }[task.kind] + "\n")
        paid = [i for i in invoices if i["status"] == "paid" and a <= i["date"] <= b]
        groups = {i["invoice_id"]: {n: ln["quantity"] * ln["unit_price_cents"]
                                    for n, ln in enumerate(i["lines"])} for i in paid}
        if task.kind == "discounted":  # by hand: the discount on the whole total
            out = yield _python(code, "I will compute this exactly with python.")
            if not _missing(out):
                lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
                yield self._final(lines[-1] if lines else "0", "Python gave the result.")
                return
            n = sum(len(g) for g in groups.values())
            gross = _by_hand("total", groups, n <= BY_HAND_NUMBERS)
            yield self._final(str(gross * (100 - discount) // 100),
                              "No python here: I worked it out by hand.")
            return
        yield from self._compute(code, task.kind, groups)

