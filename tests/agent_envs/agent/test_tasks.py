"""Research and data-ops tasks: seeded, rebuilt from ids, split hygiene, knobs, and the
facts exist only behind the tools."""

from __future__ import annotations

import re

import pytest

from agent_envs.envs.agent.dataops import DataOpsTasks, InvoiceLedger
from agent_envs.envs.agent.dataops import answer_of as dataops_answer
from agent_envs.envs.agent.oracle import BY_HAND_NUMBERS
from agent_envs.envs.agent.research import DIFFICULTIES, ResearchTasks
from agent_envs.envs.agent.research import answer_of as research_answer
from agent_envs.errors import UnknownTaskError

SOURCES = [ResearchTasks, DataOpsTasks]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_tasks_are_seeded_and_ids_rebuild_them_from_any_source(source, difficulty):
    a, b = source(difficulty=difficulty), source(difficulty=difficulty)
    for seed in (0, 7):
        task = a.sample(seed, "train")
        assert task == b.sample(seed, "train") and task.difficulty == difficulty
        assert source().get(task.id) == task  # another source rebuilds it from the knobs
    assert a.sample(0, "train") != a.sample(1, "train")


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_train_and_test_never_share_a_question(source):
    src = source(difficulty=2)
    def key(t):
        return (t.prompt, t.answer)
    train = {key(src.sample(s, "train")) for s in range(40)}
    test = {key(src.sample(s, "test")) for s in range(40)}
    assert len(train) == 40 and len(test) == 40 and not train & test
    assert all(src.sample(s, "test").split == "test" for s in range(5))


def test_research_answers_are_the_pages_numbers_and_need_many_of_them():
    for d in DIFFICULTIES:
        src = ResearchTasks(difficulty=d)
        task = src.sample(3, "test")
        world = src.world("test", task.meta["world_index"])
        stations = world.districts[task.district]
        assert int(task.answer) == research_answer(task.kind, stations, task.years)
        numbers = len(stations) * (task.years[1] - task.years[0] + 1)
        assert numbers > 2 * BY_HAND_NUMBERS  # too many to add up by hand
        # The numbers are on the pages, and in the prompt none of them is.
        docs = "".join(h for _, _, h in world.documents())
        assert all(f"{v:,}" in docs for s in stations for v in s.flows.values())
        assert not re.search(r"\d{2},\d{3}", task.prompt)


def test_research_difficulty_grows_every_knob():
    worlds = [ResearchTasks(difficulty=d).world("train", 0) for d in DIFFICULTIES]
    counts = [len(next(iter(w.districts.values()))) for w in worlds]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert not any(s.deep or s.split_at for s in worlds[0].districts[worlds[0].main[0]])
    last = worlds[-1].districts[worlds[-1].main[0]]
    assert all(s.deep and s.split_at for s in last)
    assert len(worlds[-1].districts) == 3 * len(worlds[-1].main)  # two near-namesakes each


def test_dataops_answers_come_from_the_ledger_the_functions_serve():
    for d in range(1, 6):
        task = DataOpsTasks(difficulty=d).sample(2, "train")
        ledger = InvoiceLedger(**task.ledger)
        found = ledger.find_customer(task.customer)
        assert any(m["customer_id"] == task.customer_id for m in found)
        ids = []
        for page in range(1, ledger.list_invoices(task.customer_id)["pages"] + 1):
            ids += ledger.list_invoices(task.customer_id, page)["invoice_ids"]
        invoices = [ledger.get_invoice(i) for i in ids]
        a, b = task.dates
        paid = [i for i in invoices if i["status"] == "paid" and a <= i["date"] <= b]
        discount = next(m["discount_percent"] for m in found if m["name"] == task.customer)
        assert int(task.answer) == dataops_answer(task.kind, paid, discount)
        assert sum(len(i["lines"]) for i in paid) > BY_HAND_NUMBERS
        assert task.answer not in task.prompt


def test_the_ledger_refuses_bad_calls_with_what_to_do():
    ledger = InvoiceLedger(**DataOpsTasks().sample(0, "train").ledger)
    with pytest.raises(KeyError, match="find_customer gives ids"):
        ledger.list_invoices("C-0")
    cid = next(iter(ledger.customers))
    with pytest.raises(ValueError, match=r"page 99 is out of range: there are \d+ page"):
        ledger.list_invoices(cid, 99)


@pytest.mark.parametrize(("source", "kwargs", "message"), [
    (ResearchTasks, {"difficulty": 6}, "difficulty must be an int from 1 to 5, got 6"),
    (ResearchTasks, {"stations": 1}, "stations must be 2..12, got 1"),
    (ResearchTasks, {"kinds": ("sum",)}, "kinds must name some of total, peak, range"),
    (ResearchTasks, {"deep_tables": 2.0}, "deep_tables must be a fraction in [0, 1]"),
    (DataOpsTasks, {"lines": (5, 2)}, "lines must be a (low, high) range within 1..12"),
    (DataOpsTasks, {"kinds": ()}, "kinds must name some of total, largest, discounted"),
])
def test_bad_knobs_are_clear_errors(source, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        source(**kwargs)


@pytest.mark.parametrize("bad", ["research/v0/zzz/train/0", "research/v9/x/train/0",
                                 "dataops/v0/i6/train/x", "nope"])
def test_bad_ids_are_clear_errors(bad):
    source = ResearchTasks() if bad.startswith("research") else DataOpsTasks()
    with pytest.raises(UnknownTaskError, match="malformed|knobs"):
        source.get(bad)
