"""The README's "train on your own functions" route, with the oracle in place of the model:
``task_dataset`` and ``EnvRollout`` (TRL's ``rollout_func``) on the functions env with user
tools and JSONL tasks give rewarded episodes and TRL's rollout dict."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import pytest

from agent_envs.tasks import save_tasks
from agent_envs.tasks.base import Task

pytest.importorskip("transformers", reason="the TRL adapter needs the [train] extra")
pytest.importorskip("datasets", reason="task_dataset builds a datasets.Dataset")


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Current weather in a city.

    Args:
        city: City name.
        unit: Temperature unit.
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70}


class ShoppingCart:
    """Items in a cart."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, item: str) -> int:
        """Add an item; returns the count.

        Args:
            item: What to add.
        """
        self.items.append(item)
        return len(self.items)


def test_trl_rollout_func_on_own_functions(tmp_path):
    from agent_envs.rollout import OraclePolicy
    from trainers.adapters import EnvRollout, TRLAdapterConfig, task_dataset

    path = tmp_path / "my_tasks.jsonl"
    save_tasks(path, [Task(id=f"t{i}", prompt="Add milk to my cart, then tell me the count.",
                           answer="1", answer_kind="int",
                           meta={"expected_calls": [{"name": "add",
                                                     "arguments": {"item": "milk"}}]})
                      for i in range(3)])
    env_kwargs = {"tools": [get_weather, ShoppingCart], "tasks": f"jsonl:{path}"}
    ds = task_dataset("functions", 4, env_kwargs=env_kwargs)
    rollout = EnvRollout(TRLAdapterConfig(env_id="functions", env_kwargs=env_kwargs),
                         policy_factory=lambda trainer: OraclePolicy())
    model = SimpleNamespace(training=True, train=lambda mode=True: None)
    trainer = SimpleNamespace(
        args=SimpleNamespace(temperature=1.0, top_p=1.0, top_k=None, min_p=None,
                             repetition_penalty=1.0, generation_kwargs=None,
                             max_completion_length=256),
        state=SimpleNamespace(global_step=0),
        accelerator=SimpleNamespace(process_index=0, unwrap_model=lambda m: m), model=model)
    try:
        out = rollout(list(ds["prompt"]), trainer)
    finally:
        rollout.close()
    assert [e.reward for e in rollout.last_episodes] == [1.0] * 4
    assert len(out["completion_ids"]) == 4 and len(out["env_mask"]) == 4
    # the tool results are env tokens: masked out of the loss
    assert all(0 in m and 1 in m for m in out["env_mask"])
