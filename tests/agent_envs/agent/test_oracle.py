"""The multi-tool oracle solves every task by using the tools; denied one, it cannot."""

from __future__ import annotations

import pytest

import agent_envs
from agent_envs.envs.agent import research
from agent_envs.envs.agent.dataops import InvoiceLedger
from agent_envs.oracle import Oracle

BOTH = {"research": ["python", "browser"], "dataops": ["python", "functions"]}


def run(tools, tasks, difficulty, seeds, oracle=None, **kw):
    """Rewards of oracle episodes; every observation extends the last (prefix extension)."""
    oracle = oracle or Oracle()
    if "python" in tools:
        kw.setdefault("sandbox", "local")
    env = agent_envs.make("agent", tools=tools, tasks=tasks, difficulty=difficulty, **kw)
    rewards, infos = [], []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            while True:
                action = oracle.act(obs, env.task)
                nxt, reward, term, trunc, info = env.step(action)
                assert list(nxt[: len(obs) + len(action)]) == list(obs) + list(action)
                assert info["model_error"] is None and info["infra_error"] is None
                obs = nxt
                if term or trunc:
                    break
            rewards.append(reward)
            infos.append(info)
    finally:
        env.close()
    return rewards, infos


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("family", ["research", "dataops"])
def test_the_oracle_solves_every_difficulty_with_both_tools(family, difficulty):
    rewards, infos = run(BOTH[family], family, difficulty, seeds=[difficulty])
    assert rewards == [1.0]
    calls = infos[0]["tool_calls"]
    assert calls >= 3 + difficulty  # it browsed or fetched, then computed
    assert infos[0]["turn"] <= 32 and infos[0]["truncated_reason"] is None


@pytest.mark.parametrize("family", ["research", "dataops"])
def test_the_wrong_oracle_scores_zero(family):
    rewards, _ = run(BOTH[family], family, 1, seeds=[0, 1], oracle=Oracle(wrong=True))
    assert rewards == [0.0, 0.0]


@pytest.mark.parametrize(("family", "tools"), [
    ("research", ["browser"]), ("research", ["python"]),
    ("dataops", ["functions"]), ("dataops", ["python"]),
])
def test_denied_one_tool_the_oracle_fails(family, tools):
    """The full measurement is benchmarks/agent_ablation.py; here a seeded sample."""
    rewards, infos = run(tools, family, 2, seeds=[0, 1, 2])
    assert rewards == [0.0, 0.0, 0.0]
    assert all(i["verdict"]["extracted"] is not None for i in infos)  # it did answer


def test_the_answer_is_computed_from_what_the_functions_returned(monkeypatch):
    real = InvoiceLedger.get_invoice

    def off_by_one(self, invoice_id):
        inv = real(self, invoice_id)
        inv["lines"][0]["quantity"] += 1
        return inv

    monkeypatch.setattr(InvoiceLedger, "get_invoice", off_by_one)
    rewards, infos = run(BOTH["dataops"], "dataops", 1, seeds=[0])
    assert rewards == [0.0] and infos[0]["verdict"]["extracted"] is not None


def test_the_answer_is_computed_from_what_the_pages_showed(monkeypatch):
    table = research.ResearchWorld._table
    monkeypatch.setattr(research.ResearchWorld, "_table",
                        staticmethod(lambda rows: table([(y, v + 1) for y, v in rows])))
    monkeypatch.setattr(research, "_WORLDS", type(research._WORLDS)())  # no cached corpus
    rewards, _ = run(BOTH["research"], "research", 1, seeds=[0])
    assert rewards == [0.0]
