"""Procedural function-calling tasks over stateful tool sets (bank, shop, files, calendar).

Each task is a goal checked on the final state of its tool set (and on the final answer
when one is asked), with a reference plan the oracle follows. Difficulty knobs, set by
``difficulty`` (1..5) or one by one:

| knob | meaning | d1 | d2 | d3 | d4 | d5 |
|---|---|---|---|---|---|---|
| ``actions`` | state changes the goal needs | 1 | 2 | 2 | 3 | 4 |
| ``lookup`` | ids must be looked up first (names given, not ids) | no | yes | yes | yes | yes |
| ``distractors`` | other tool sets declared but not needed | 0 | 0 | 1 | 1 | 2 |
| ``failure`` | one state-changing call fails once (transient) | no | no | no | yes | yes |
| ``question`` | a value must also be reported in the answer | no | no | yes | yes | yes |

Seeds give unlimited tasks; each concrete task belongs to the train or test split by a
stable hash of its parameters (``agent_envs.tasks.split_of``), so the splits never overlap.
Task ids (``functions-procedural/v0/<set>/d<k>/<split>/<seed>``) rebuild the task.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import StatefulTools
from agent_envs.envs.functions.toolsets import TOOLSETS
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.base import Split, TaskSource, Verdict
from agent_envs.tasks.splits import split_of

__all__ = ["KNOBS", "ProceduralFunctionTask", "ProceduralFunctionTasks"]

NAME = "functions-procedural"
VERSION = "v0"
KNOBS: dict[int, dict[str, Any]] = {
    1: {"actions": 1, "lookup": False, "distractors": 0, "failure": False, "question": False},
    2: {"actions": 2, "lookup": True, "distractors": 0, "failure": False, "question": False},
    3: {"actions": 2, "lookup": True, "distractors": 1, "failure": False, "question": True},
    4: {"actions": 3, "lookup": True, "distractors": 1, "failure": True, "question": True},
    5: {"actions": 4, "lookup": True, "distractors": 2, "failure": True, "question": True},
}
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia",
          "Ken", "Margaret", "Niklaus", "Shafi", "Leslie", "Tim", "Sophie"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus",
         "Perlman", "Thompson", "Hamilton", "Wirth", "Goldwasser", "Lamport", "Berners",
         "Wilson"]
_PRODUCTS = ["blue kettle", "steel teapot", "oak chair", "linen towel", "glass vase",
             "wool scarf", "desk lamp", "copper pan", "bamboo tray", "cotton rug",
             "paper lantern", "clay mug"]
_DIRS = ["/docs", "/notes", "/archive", "/projects", "/inbox"]
_WORDS = ["alpha", "budget", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris",
          "juniper", "kestrel", "lumen"]


@dataclass(frozen=True, kw_only=True)
class ProceduralFunctionTask(FunctionsTask):
    """A goal over a stateful tool set.

    Attributes:
        toolset: The tool set the goal is about (``bank``, ``shop``, ``files``).
        configs: Constructor config of every tool set in the episode (the goal's first,
            then distractors), by tool set name.
        plan: The reference calls, ``({"name", "arguments"}, ...)``, in order.
        expected_state: The goal's tool set ``_state()`` after the plan.
        question: Whether the final answer is checked too (against ``answer``).
    """

    toolset: str = "bank"
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    plan: tuple[Mapping[str, Any], ...] = ()
    expected_state: Mapping[str, Any] = field(default_factory=dict)
    question: bool = False

    def episode(self) -> EpisodeState:
        tools, instances = [], {}
        for name, cfg in self.configs.items():
            inst, bound = StatefulTools(TOOLSETS[name], config=cfg).bind()
            tools.extend(bound)
            instances[name] = inst
        return EpisodeState(tools, instances)

    def judge(self, episode: EpisodeState) -> Verdict:
        state = _canonical(episode.instances[self.toolset]._state())
        if state != _canonical(self.expected_state):
            return Verdict(correct=False, extracted=None,
                           reason="final state differs from the goal")
        if not self.question:
            return Verdict(correct=True, extracted=None, reason="goal state reached")
        return super().judge(episode)


    def tool_names(self) -> list[str]:
        return [m for name in self.configs for m in StatefulTools(TOOLSETS[name]).methods]

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        n_ok = sum(1 for _, _, text in done if not text.startswith("Error:"))
        if n_ok >= len(self.plan):
            return None
        step = self.plan[n_ok]
        return step["name"], dict(step["arguments"])


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _stable_int(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _names(rng: random.Random, k: int) -> list[str]:
    firsts = rng.sample(_FIRST, k)
    return [f"{f} {rng.choice(_LAST)}" for f in firsts]


# -- generators: (rng, knobs) -> (config, prompt, plan, answer) ------------------------

def _gen_bank(rng: random.Random, knobs: dict[str, Any]) -> tuple[dict, str, list, str]:
    n = 3 + knobs["actions"]
    owners = _names(rng, n)
    ids = rng.sample(range(1000, 9999), n)
    accounts = {f"AC-{i}": {"owner": o, "balance": rng.randrange(200, 2000, 10)}
                for i, o in zip(ids, owners)}
    accts = list(accounts)
    balances = {a: accounts[a]["balance"] for a in accts}
    plan: list[dict[str, Any]] = []
    found: set[str] = set()
    asks = []

    def ref(acct: str) -> str:
        if not knobs["lookup"]:
            return f"account {acct}"
        if acct not in found:
            found.add(acct)
            plan.append({"name": "find_account", "arguments": {"owner": accounts[acct]["owner"]}})
        return f"{accounts[acct]['owner']}'s account"

    for _ in range(knobs["actions"]):
        src, dst = rng.sample(accts, 2)
        amount = rng.randrange(10, max(20, balances[src] // 2), 5)
        asks.append(f"move ${amount} from {ref(src)} to {ref(dst)}")
        plan.append({"name": "transfer",
                     "arguments": {"from_account": src, "to_account": dst, "amount": amount}})
        balances[src] -= amount
        balances[dst] += amount
    prompt = "Please " + "; then ".join(asks) + "."
    answer = ""
    if knobs["question"]:
        target = rng.choice(accts)
        who = accounts[target]["owner"] if knobs["lookup"] else target
        prompt += (f" Afterwards, tell me the balance of {who}'s account in dollars."
                   if knobs["lookup"] else
                   f" Afterwards, tell me the balance of account {who} in dollars.")
        if knobs["lookup"] and target not in found:
            plan.append({"name": "find_account", "arguments": {"owner": who}})
        plan.append({"name": "get_balance", "arguments": {"account_id": target}})
        answer = str(balances[target])
    return {"accounts": accounts}, prompt, plan, answer


def _gen_shop(rng: random.Random, knobs: dict[str, Any]) -> tuple[dict, str, list, str]:
    names = rng.sample(_PRODUCTS, 3 + knobs["actions"])
    skus = rng.sample(range(100, 999), len(names))
    inventory = {f"SKU-{s}": {"name": n, "price": rng.randrange(5, 120), "stock":
                              rng.randrange(3, 30)} for s, n in zip(skus, names)}
    items = rng.sample(list(inventory), knobs["actions"])
    plan: list[dict[str, Any]] = []
    asks, total = [], 0
    for sku in items:
        qty = rng.randrange(1, min(5, inventory[sku]["stock"]) + 1)
        if knobs["lookup"]:
            plan.append({"name": "search_products", "arguments": {"query": inventory[sku]["name"]}})
            asks.append(f"{qty} x {inventory[sku]['name']}")
        else:
            asks.append(f"{qty} x {sku}")
        plan.append({"name": "place_order", "arguments": {"sku": sku, "quantity": qty}})
        total += qty * inventory[sku]["price"]
    prompt = "Place one order for each of these: " + ", ".join(asks) + "."
    answer = ""
    if knobs["question"]:
        prompt += " Then tell me the total price of all the orders in dollars."
        answer = str(total)
    return {"inventory": inventory}, prompt, plan, answer


def _gen_files(rng: random.Random, knobs: dict[str, Any]) -> tuple[dict, str, list, str]:
    words = rng.sample(_WORDS, 4 + knobs["actions"])
    dirs = rng.sample(_DIRS, 3)
    files = {}
    for i, w in enumerate(words):
        lines = rng.randrange(1, 6)
        files[f"{dirs[i % 2]}/{w}.txt"] = "\n".join(f"{w} line {j + 1}" for j in range(lines))
    plan: list[dict[str, Any]] = []
    asks = []
    listed: set[str] = set()
    movable = sorted(files)
    rng.shuffle(movable)
    for src in movable[: knobs["actions"]]:
        base = src.rsplit("/", 1)[1]
        src_dir = src.rsplit("/", 1)[0]
        if knobs["lookup"]:
            stem = base.removesuffix(".txt")
            if src_dir not in listed:
                listed.add(src_dir)
                plan.append({"name": "list_files", "arguments": {"directory": src_dir}})
            asks.append(f"move the {stem} file from {src_dir} into {dirs[2]}")
        else:
            asks.append(f"move {src} to {dirs[2]}/{base}")
        plan.append({"name": "move_file",
                     "arguments": {"source": src, "destination": f"{dirs[2]}/{base}"}})
    prompt = "In the file system, " + "; ".join(asks) + "."
    answer = ""
    if knobs["question"]:
        left = sorted(set(files) - {p["arguments"]["source"] for p in plan
                                    if p["name"] == "move_file"})
        target = rng.choice(left)
        prompt += f" Also tell me how many lines {target} has."
        plan.append({"name": "read_file", "arguments": {"path": target}})
        answer = str(files[target].count("\n") + 1)
    return {"files": files}, prompt, plan, answer


_TITLES = ["Budget review", "Dentist", "Team standup", "Design critique", "Lunch with Ada",
           "Gym", "Quarterly planning", "Code review", "Piano lesson", "Vendor call",
           "Offsite prep", "Book club"]


def _gen_calendar(rng: random.Random, knobs: dict[str, Any]) -> tuple[dict, str, list, str]:
    from agent_envs.envs.functions.toolsets import Calendar
    days = [f"2026-03-{d:02d}" for d in rng.sample(range(2, 28), 3)]
    titles = rng.sample(_TITLES, 3 + knobs["actions"] + 1)
    events: dict[str, dict[str, Any]] = {}
    for i, title in enumerate(titles[:3]):
        events[f"EV-{i + 1}"] = {"title": title, "date": days[i % 3], "duration_hours": 1,
                                 "start_hour": rng.choice([9, 11, 14, 16])}
    sim = Calendar(events)
    plan: list[dict[str, Any]] = []
    asks: list[str] = []
    listed: set[str] = set()
    fresh = iter(titles[3:])
    for k in range(knobs["actions"]):
        if k % 2 == 0:  # create, in a free slot
            date, hour = rng.choice(days), rng.randrange(8, 18)
            while sim._clash(date, hour, 1) is not None:
                date, hour = rng.choice(days), rng.randrange(8, 18)
            title = next(fresh)
            args = {"title": title, "date": date, "start_hour": hour, "duration_hours": 1}
            sim.create_event(**args)
            plan.append({"name": "create_event", "arguments": args})
            asks.append(f"add '{title}' on {date} at {hour}:00 for one hour")
            continue
        while True:  # move an event to another free slot
            eid, date, hour = rng.choice(sorted(sim.events)), rng.choice(days), rng.randrange(8, 18)
            ev = sim.events[eid]
            if (date, hour) != (ev["date"], ev["start_hour"]) and sim._clash(
                    date, hour, ev["duration_hours"], skip=eid) is None:
                break
        if knobs["lookup"]:
            if ev["date"] not in listed:
                listed.add(ev["date"])
                plan.append({"name": "list_events", "arguments": {"date": ev["date"]}})
            asks.append(f"move '{ev['title']}' (on {ev['date']}) to {date} at {hour}:00")
        else:
            asks.append(f"move event {eid} to {date} at {hour}:00")
        plan.append({"name": "move_event",
                     "arguments": {"event_id": eid, "date": date, "start_hour": hour}})
        sim.move_event(eid, date, hour)
    prompt = "On my calendar, " + "; then ".join(asks) + "."
    answer = ""
    if knobs["question"]:
        day = rng.choice(days)
        prompt += f" Then tell me how many events I have on {day}."
        plan.append({"name": "list_events", "arguments": {"date": day}})
        answer = str(len(sim.list_events(day)))
    return {"events": events}, prompt, plan, answer


_GENERATORS = {"bank": _gen_bank, "shop": _gen_shop, "files": _gen_files,
               "calendar": _gen_calendar}
_FAILING = {"bank": "transfer", "shop": "place_order", "files": "move_file",
            "calendar": "create_event"}


class ProceduralFunctionTasks(TaskSource):
    """Seeded function-calling tasks (see the module docstring).

    Args:
        difficulty: 1..5 (sets every knob, see ``KNOBS``).
        sets: Tool sets to draw goals from (default: all of ``bank``, ``shop``, ``files``,
            ``calendar``).
        **knobs: Override single knobs: ``actions`` (>= 1), ``lookup``, ``distractors``
            (0..2), ``failure``, ``question``.

    Raises:
        ValueError: an unknown set or knob, or a value out of range.
    """

    name = NAME

    def __init__(self, difficulty: int = 1, sets: Sequence[str] | None = None,
                 **knobs: Any) -> None:
        if isinstance(difficulty, bool) or difficulty not in KNOBS:
            raise ValueError(f"difficulty must be 1..5, got {difficulty!r}")
        self.difficulty = int(difficulty)
        self.sets = tuple(sets) if sets else tuple(_GENERATORS)
        unknown = [s for s in self.sets if s not in _GENERATORS]
        if unknown:
            raise ValueError(f"unknown tool set(s) {unknown}; known: {', '.join(_GENERATORS)}")
        bad = sorted(set(knobs) - set(KNOBS[1]))
        if bad:
            raise ValueError(f"unknown knob(s) {bad}; knobs: {', '.join(KNOBS[1])}")
        self.knobs = {**KNOBS[self.difficulty], **knobs}
        if int(self.knobs["actions"]) < 1 or not 0 <= int(self.knobs["distractors"]) <= 2:
            raise ValueError(f"actions must be >= 1 and distractors 0..2, got {self.knobs}")

    def sample(self, seed: int, split: Split = "train") -> ProceduralFunctionTask:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        pick = random.Random(_stable_int(NAME, VERSION, self.difficulty, ",".join(self.sets),
                                         split, seed))
        return self._build(pick.choice(self.sets), split, int(seed))

    def _build(self, toolset: str, split: Split, seed: int) -> ProceduralFunctionTask:
        for attempt in range(1000):
            rng = random.Random(_stable_int(NAME, VERSION, toolset, json.dumps(self.knobs,
                                            sort_keys=True), seed, attempt))
            config, prompt, plan, answer = _GENERATORS[toolset](rng, self.knobs)
            if split_of(f"{NAME}-{toolset}", {"config": config, "prompt": prompt}) == split:
                break
        others = [s for s in _GENERATORS if s != toolset]
        distract = rng.sample(others, int(self.knobs["distractors"]))
        configs: dict[str, dict[str, Any]] = {toolset: dict(config)}
        for d in distract:
            configs[d] = _GENERATORS[d](rng, {**self.knobs, "question": False})[0]
        expected = _run_plan(toolset, config, plan)
        if self.knobs["failure"]:
            configs[toolset]["fail_once"] = [_FAILING[toolset]]
        task_id = f"{NAME}/{VERSION}/{toolset}/d{self.difficulty}/{split}/{seed}"
        return ProceduralFunctionTask(
            id=task_id, prompt=prompt, answer=answer, answer_kind="int" if answer else "str",
            split=split, difficulty=self.difficulty, source=NAME,
            meta={"knobs": dict(self.knobs), "toolset": toolset},
            toolset=toolset, configs=configs, plan=tuple(plan), expected_state=expected,
            question=bool(answer),
            instructions=("Use the functions to carry out the user's request exactly. Look "
                          "up ids you are not given. If a call fails, read the error and "
                          "recover. Finish with a short answer to the user."))

    def get(self, task_id: str) -> ProceduralFunctionTask:
        parts = task_id.split("/") if isinstance(task_id, str) else []
        ok = (len(parts) == 6 and parts[0] == NAME and parts[1] == VERSION
              and parts[2] in _GENERATORS and parts[3][:1] == "d" and parts[3][1:].isdigit()
              and int(parts[3][1:]) in KNOBS and parts[4] in ("train", "test")
              and parts[5].lstrip("-").isdigit())
        if not ok:
            raise UnknownTaskError(f"malformed task id {task_id!r}; expected "
                                   f"'{NAME}/{VERSION}/<bank|shop|files|calendar>/d<1-5>/<split>/<seed>'")
        src = self if int(parts[3][1:]) == self.difficulty else ProceduralFunctionTasks(
            int(parts[3][1:]), self.sets)
        return src._build(parts[2], parts[4], int(parts[5]))  # type: ignore[arg-type]


def _run_plan(toolset: str, config: Mapping[str, Any], plan: Sequence[Mapping[str, Any]]
              ) -> dict[str, Any]:
    inst = TOOLSETS[toolset](**config)
    for step in plan:
        getattr(inst, step["name"])(**step["arguments"])
    return _canonical(inst._state())
