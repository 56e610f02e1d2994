"""Data-ops tasks: fetch records with developer functions, then compute with python.

Each task comes with a fresh invoice ledger per episode (developer functions declared in the
developer message): ``find_customer``, ``list_invoices`` (paginated) and ``get_invoice``
(its lines: SKU, quantity, unit price in cents). The records are seeded and made up, and
the question asks for an exact figure over a customer's invoices in a date range, which
means fetching every invoice and computing over dozens of line items:

* ``total``: the total of the customer's paid invoices (quantity x unit price, summed);
* ``largest``: the largest single paid invoice total;
* ``discounted``: the paid total after the customer's discount, applied to each invoice
  total and rounded down to whole cents.

Difficulty knobs:

| knob | meaning | d1 | d2 | d3 | d4 | d5 |
|---|---|---|---|---|---|---|
| ``invoices`` | the customer's invoices (calls to fetch them) | 6 | 9 | 12 | 16 | 20 |
| ``lines`` | line items per invoice | 2-3 | 2-4 | 2-5 | 3-6 | 3-7 |
| ``page_size`` | invoice ids per ``list_invoices`` page | 10 | 5 | 5 | 4 | 4 |
| ``kinds`` | question kinds drawn from | total | +largest | +discounted | all | all |
| ``lookup`` | the customer is named, its id must be looked up | no | yes | yes | yes | yes |
| ``statuses`` | some invoices are open or void (not paid) | no | yes | yes | yes | yes |
| ``decoys`` | customers with near-identical names | 0 | 1 | 2 | 2 | 3 |

Split hygiene: each task belongs to one split by a stable hash of its whole content (ledger
and question; sampling redraws until it matches). Task ids
(``dataops/v0/<knobs>/<split>/<seed>``) rebuild the task.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_envs.envs.agent.research import agent_oracle
from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.errors import UnknownTaskError
from agent_envs.oracle import register_oracle
from agent_envs.tasks.base import Split, Task, TaskSource
from agent_envs.tasks.splits import check_split, split_of, stable_int

__all__ = ["DIFFICULTIES", "KINDS", "DataOpsTask", "DataOpsTasks", "InvoiceLedger",
           "answer_of"]

VERSION = "v0"
KINDS = ("total", "largest", "discounted")
DIFFICULTIES: dict[int, dict[str, Any]] = {
    1: {"invoices": 6, "lines": (2, 3), "page_size": 10, "kinds": ("total",),
        "lookup": False, "statuses": False, "decoys": 0},
    2: {"invoices": 9, "lines": (2, 4), "page_size": 5, "kinds": ("total", "largest"),
        "lookup": True, "statuses": True, "decoys": 1},
    3: {"invoices": 12, "lines": (2, 5), "page_size": 5, "kinds": KINDS,
        "lookup": True, "statuses": True, "decoys": 2},
    4: {"invoices": 16, "lines": (3, 6), "page_size": 4, "kinds": KINDS,
        "lookup": True, "statuses": True, "decoys": 2},
    5: {"invoices": 20, "lines": (3, 7), "page_size": 4, "kinds": KINDS,
        "lookup": True, "statuses": True, "decoys": 3},
}
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia",
          "Ken", "Margaret", "Niklaus", "Shafi", "Leslie", "Tim", "Sophie")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus",
         "Perlman", "Thompson", "Hamilton", "Wirth", "Goldwasser", "Lamport", "Wilson")
_SUFFIX = ("Trading", "Supplies", "Holdings", "Works", "Partners")
_SKUS = tuple(f"{p}-{n}" for p in ("KET", "LMP", "RUG", "VAS", "MUG", "PAN", "TRY", "SCF")
              for n in (100, 220, 350))
_YEAR = 2024


class InvoiceLedger:
    """A customer ledger: customers, and their invoices with line items (built per episode).

    Args:
        customers: ``{customer_id: {"name", "discount_percent"}}``.
        invoices: ``{invoice_id: {"customer_id", "date", "status", "lines"}}``.
        page_size: Invoice ids per ``list_invoices`` page.
    """

    def __init__(self, customers: dict[str, dict[str, Any]],
                 invoices: dict[str, dict[str, Any]], page_size: int = 10) -> None:
        self.customers = copy.deepcopy(customers)
        self.invoices = copy.deepcopy(invoices)
        self.page_size = int(page_size)

    def find_customer(self, name: str) -> list[dict[str, Any]]:
        """Customers whose name contains the given text (case-insensitive).

        Args:
            name: A customer's name or part of it, e.g. "Lovelace".
        """
        want = name.strip().lower()
        if not want:
            raise ValueError("name is empty; give a customer's name or part of it")
        return [{"customer_id": cid, "name": c["name"],
                 "discount_percent": c["discount_percent"]}
                for cid, c in sorted(self.customers.items()) if want in c["name"].lower()]

    def list_invoices(self, customer_id: str, page: int = 1) -> dict[str, Any]:
        """The ids of a customer's invoices, oldest first, one page at a time.

        Args:
            customer_id: The customer's id, e.g. "C-1042".
            page: Which page of results (1 is the first).
        """
        if customer_id not in self.customers:
            raise KeyError(f"no customer has id {customer_id!r}; find_customer gives ids")
        ids = sorted((i for i, v in self.invoices.items() if v["customer_id"] == customer_id),
                     key=lambda i: (self.invoices[i]["date"], i))
        pages = max(1, -(-len(ids) // self.page_size))
        if not 1 <= page <= pages:
            raise ValueError(f"page {page} is out of range: there are {pages} page(s)")
        start = (page - 1) * self.page_size
        return {"customer_id": customer_id, "page": page, "pages": pages,
                "invoice_ids": ids[start:start + self.page_size]}

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        """One invoice: its customer, date, status (paid, open or void) and line items,
        each with a SKU, a quantity and a unit price in cents.

        Args:
            invoice_id: The invoice's id, e.g. "INV-20417".
        """
        if invoice_id not in self.invoices:
            raise KeyError(f"no invoice has id {invoice_id!r}")
        return {"invoice_id": invoice_id, **copy.deepcopy(self.invoices[invoice_id])}

    def _state(self) -> dict[str, Any]:
        return {"customers": self.customers, "invoices": self.invoices}


def _invoice_total(inv: Mapping[str, Any]) -> int:
    return sum(int(x["quantity"]) * int(x["unit_price_cents"]) for x in inv["lines"])


def answer_of(kind: str, invoices: list[Mapping[str, Any]], discount_percent: int) -> int:
    """The exact answer of a question of ``kind`` over the invoices it covers (paid, in
    range)."""
    totals = [_invoice_total(inv) for inv in invoices]
    if kind == "total":
        return sum(totals)
    if kind == "largest":
        return max(totals) if totals else 0
    if kind == "discounted":
        return sum(t * (100 - discount_percent) // 100 for t in totals)
    raise ValueError(f"unknown data-ops question kind {kind!r}; kinds: {', '.join(KINDS)}")


_QUESTIONS = {
    "total": "what is the total of all of {who}'s paid invoices dated from {a} to {b} "
             "inclusive, in cents (each invoice's total is the sum over its lines of quantity "
             "times unit price)?",
    "largest": "what is the total, in cents, of the largest single paid invoice of {who} "
               "dated from {a} to {b} inclusive (an invoice's total is the sum over its lines "
               "of quantity times unit price)?",
    "discounted": "what is the total of all of {who}'s paid invoices dated from {a} to {b} "
                  "inclusive after the customer's discount, in cents? Apply the discount "
                  "percentage to each invoice's total (the sum over its lines of quantity "
                  "times unit price) and round each discounted invoice down to whole cents.",
}


@dataclass(frozen=True, kw_only=True)
class DataOpsTask(FunctionsTask):
    """A data-ops question with its ledger (see the module docstring).

    Attributes:
        ledger: The ledger's constructor config (customers, invoices, page size).
        customer: The name of the customer the question is about (the prompt names it).
        customer_id: Its id.
        kind: ``total``, ``largest`` or ``discounted``.
        dates: The first and last date (ISO) the question covers.
    """

    ledger: Mapping[str, Any] = field(default_factory=dict)
    customer: str = ""
    customer_id: str = ""
    kind: str = "total"
    dates: tuple[str, str] = ("", "")

    def episode(self) -> EpisodeState:
        from agent_envs.envs.functions.tools import StatefulTools

        inst, tools = StatefulTools(InvoiceLedger, config=self.ledger).bind()
        return EpisodeState(tools, {"InvoiceLedger": inst})

    def tool_names(self) -> list[str]:
        return ["find_customer", "list_invoices", "get_invoice"]


class DataOpsTasks(TaskSource):
    """Unlimited seeded data-ops questions (see the module docstring for the knobs).

    Args:
        difficulty: 1..5, a preset of the knobs.
        invoices, lines, page_size, kinds, lookup, statuses, decoys: Override one knob.

    Raises:
        ValueError: a knob out of its range.
    """

    name = "dataops"

    def __init__(self, *, difficulty: int = 1, invoices: int | None = None,
                 lines: tuple[int, int] | None = None, page_size: int | None = None,
                 kinds: tuple[str, ...] | None = None, lookup: bool | None = None,
                 statuses: bool | None = None, decoys: int | None = None) -> None:
        if isinstance(difficulty, bool) or difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be an int from 1 to {max(DIFFICULTIES)}, got "
                             f"{difficulty!r}; pass e.g. difficulty=2")
        k = dict(DIFFICULTIES[difficulty])
        given = {"invoices": invoices, "lines": lines, "page_size": page_size, "kinds": kinds,
                 "lookup": lookup, "statuses": statuses, "decoys": decoys}
        k.update({n: v for n, v in given.items() if v is not None})
        if not 2 <= int(k["invoices"]) <= 60:
            raise ValueError(f"invoices must be 2..60, got {k['invoices']!r}")
        lo, hi = k["lines"]
        if not 1 <= int(lo) <= int(hi) <= 12:
            raise ValueError(f"lines must be a (low, high) range within 1..12, got {k['lines']!r}")
        if not 1 <= int(k["page_size"]) <= 50:
            raise ValueError(f"page_size must be 1..50, got {k['page_size']!r}")
        bad = [x for x in k["kinds"] if x not in KINDS] or ([] if k["kinds"] else ["(none)"])
        if bad:
            raise ValueError(f"kinds must name some of {', '.join(KINDS)}, got {bad[0]!r}")
        if not 0 <= int(k["decoys"]) <= 5:
            raise ValueError(f"decoys must be 0..5, got {k['decoys']!r}")
        k["kinds"], k["lines"] = tuple(k["kinds"]), tuple(int(x) for x in k["lines"])
        #: The preset these knobs are (0 when a knob was set to something no preset has).
        self.difficulty = next((d for d, p in DIFFICULTIES.items() if p == k), 0)
        self.knob_values = k

    @property
    def knobs(self) -> str:
        """The knobs as they appear in task ids."""
        k = self.knob_values
        return (f"i{k['invoices']}.l{k['lines'][0]}-{k['lines'][1]}.p{k['page_size']}"
                f".k{''.join(x[0] for x in k['kinds'])}.u{int(bool(k['lookup']))}"
                f".s{int(bool(k['statuses']))}.x{k['decoys']}")

    def __repr__(self) -> str:
        return f"DataOpsTasks(difficulty={self.difficulty}, knobs={self.knobs!r})"

    def _ledger(self, rng: random.Random) -> tuple[dict[str, Any], str, str]:
        k = self.knob_values
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        target = f"{first} {last}"
        names = [target] + [f"{target} {s}" for s in rng.sample(_SUFFIX, int(k["decoys"]))]
        others = [f"{f} {n}" for f, n in zip(rng.sample(_FIRST, 3), rng.sample(_LAST, 3))
                  if f"{f} {n}" != target]
        customers: dict[str, dict[str, Any]] = {}
        for name in names + others:
            cid = f"C-{rng.randrange(1000, 9999)}"
            while cid in customers:
                cid = f"C-{rng.randrange(1000, 9999)}"
            customers[cid] = {"name": name, "discount_percent": rng.choice((5, 8, 10, 12, 15))}
        invoices: dict[str, dict[str, Any]] = {}
        lo, hi = k["lines"]
        for cid, c in customers.items():
            n = int(k["invoices"]) if c["name"] == target else rng.randrange(2, 6)
            for _ in range(n):
                iid = f"INV-{rng.randrange(10000, 99999)}"
                while iid in invoices:
                    iid = f"INV-{rng.randrange(10000, 99999)}"
                day = dt.date(_YEAR, 1, 1) + dt.timedelta(days=rng.randrange(0, 366))
                status = rng.choices(("paid", "open", "void"), (6, 2, 1))[0] \
                    if k["statuses"] else "paid"
                lines = [{"sku": rng.choice(_SKUS), "quantity": rng.randrange(1, 40),
                          "unit_price_cents": rng.randrange(150, 25_000)}
                         for _ in range(rng.randint(int(lo), int(hi)))]
                invoices[iid] = {"customer_id": cid, "date": day.isoformat(),
                                 "status": status, "lines": lines}
        target_id = next(cid for cid, c in customers.items() if c["name"] == target)
        return ({"customers": customers, "invoices": invoices,
                 "page_size": int(k["page_size"])}, target_id, target)

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed`` in ``split``: a pure function of the seed, split and knobs."""
        split = check_split(split)
        seed = int(seed)
        for attempt in range(200):
            rng = random.Random(stable_int("dataops", VERSION, self.knobs, split, seed, attempt))
            ledger, cid, name = self._ledger(rng)
            kind = rng.choice(tuple(self.knob_values["kinds"]))
            mine = sorted((v for v in ledger["invoices"].values() if v["customer_id"] == cid),
                          key=lambda v: v["date"])
            # A range that holds most of the customer's invoices: the whole list must be read.
            a = mine[rng.randrange(0, max(1, len(mine) // 4))]["date"]
            b = mine[len(mine) - 1 - rng.randrange(0, max(1, len(mine) // 4))]["date"]
            covered = [v for v in mine if a <= v["date"] <= b and v["status"] == "paid"]
            if not covered:
                continue
            digest = hashlib.sha256(json.dumps([ledger, kind, a, b], sort_keys=True)
                                    .encode()).hexdigest()
            if split_of("dataops", {"digest": digest}, VERSION, test_fraction=0.5) == split:
                break
        else:  # pragma: no cover - each draw lands in a split with probability 1/2
            raise RuntimeError("no data-ops task of the requested split found")
        discount = ledger["customers"][cid]["discount_percent"]
        who = name if self.knob_values["lookup"] else f"customer {cid} ({name})"
        prompt = ("Use the invoice ledger's functions to answer: "
                  + _QUESTIONS[kind].format(who=who, a=a, b=b))
        return DataOpsTask(
            id=f"dataops/{VERSION}/{self.knobs}/{split}/{seed}", prompt=prompt,
            answer=str(answer_of(kind, covered, discount)), answer_kind="int", split=split,
            difficulty=self.difficulty, source=self.name, ledger=ledger, customer=name,
            customer_id=cid,
            kind=kind, dates=(a, b),
            meta={"kind": kind, "invoices": len(mine), "covered": len(covered),
                  "knobs": self.knobs})

    @classmethod
    def from_knobs(cls, knobs: str) -> DataOpsTasks:
        """The source whose :attr:`knobs` are ``knobs`` (as in a task id).

        Raises:
            UnknownTaskError: ``knobs`` is not such a string.
        """
        m = re.fullmatch(r"i(\d+)\.l(\d+)-(\d+)\.p(\d+)\.k([tld]+)\.u([01])\.s([01])"
                         r"\.x(\d+)", knobs)
        if m is None:
            raise UnknownTaskError(f"data-ops task knobs {knobs!r} are malformed; they look "
                                   f"like {DataOpsTasks().knobs!r}")
        i, lo, hi, p, k, u, st, x = m.groups()
        try:
            return cls(invoices=int(i), lines=(int(lo), int(hi)), page_size=int(p),
                       kinds=tuple(kind for kind in KINDS if kind[0] in k), lookup=u == "1",
                       statuses=st == "1", decoys=int(x))
        except ValueError as e:
            raise UnknownTaskError(f"data-ops task knobs {knobs!r}: {e}") from None

    def get(self, task_id: str) -> Task:
        """Rebuild a task from its id (whatever its knobs: a source with them is made).

        Raises:
            UnknownTaskError: malformed id.
        """
        parts = str(task_id).split("/")
        if (len(parts) != 5 or parts[0] != "dataops" or parts[1] != VERSION
                or parts[3] not in ("train", "test") or not parts[4].isdigit()):
            raise UnknownTaskError(f"malformed data-ops task id {task_id!r}; expected "
                                   f"'dataops/{VERSION}/<knobs>/<train|test>/<seed>', e.g. "
                                   f"'dataops/{VERSION}/{self.knobs}/train/0'")
        source = self if parts[2] == self.knobs else self.from_knobs(parts[2])
        return source.sample(int(parts[4]), parts[3])  # type: ignore[arg-type]


register_oracle(DataOpsTask, agent_oracle)
