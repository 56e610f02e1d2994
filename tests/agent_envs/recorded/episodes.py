"""Fixed episodes of the single-tool envs, recorded once from the code before the tool-parts
refactor (issue 19) and replayed by ``test_recorded_observations.py``.

    python -m tests.agent_envs.recorded.episodes   # (re)write recorded.json.gz

Do not re-record to make the test pass: the recording is the behaviour the presets must keep,
token for token. Each episode is a setup (env id and arguments), a seed and a script of steps:
``"oracle"`` (the oracle's completion, recorded as token ids) or a literal completion (a model
mistake). The recording holds every action's token ids, every observation (the first one
whole, then only the tokens the env appended, or the whole observation after a segment
break), the rewards and flags, and ``info`` without wall-clock values.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("recorded.json.gz")


def get_weather(city: str, unit: str = "celsius") -> dict:
    """Current weather for a city.

    Args:
        city: City name.
        unit: celsius or fahrenheit.
    """
    return {"city": city, "temp": 21 if unit == "celsius" else 70, "unit": unit}


class Cart:
    """A shopping cart (fresh per episode)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add_item(self, item: str) -> list[str]:
        """Add an item to the cart.

        Args:
            item: The item.
        """
        self.items.append(item)
        return list(self.items)


#: Setup name -> (env id, a function returning the env's arguments).
SETUPS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "python-d1": ("python-tool", lambda: {"difficulty": 1, "sandbox": "local"}),
    "python-d3-test": ("python-tool", lambda: {"difficulty": 3, "split": "test",
                                               "sandbox": "local"}),
    "python-retry": ("python-tool", lambda: {"difficulty": 2, "sandbox": "local",
                                             "answer_retries": 1,
                                             "conversation_date": "2025-01-02",
                                             "reasoning_effort": "high", "max_turns": 12}),
    "python-cut-end": ("python-tool", lambda: {"sandbox": "local", "cut_completion": "end"}),
    "browser-d1": ("browser", lambda: {"difficulty": 1}),
    "browser-d3": ("browser", lambda: {"difficulty": 3, "split": "test",
                                       "citation_weight": 0.5, "evidence_weight": 0.25}),
    "browser-f1": ("browser", lambda: {"difficulty": 2, "reward": "f1"}),
    "functions-d1": ("functions", lambda: {"difficulty": 1}),
    "functions-d4": ("functions", lambda: {"difficulty": 4, "split": "test"}),
    "functions-user-tools": ("functions", lambda: {
        "tasks": "procedural", "difficulty": 2, "tools": [get_weather, Cart]}),
    "functions-bfcl-simple": ("functions", lambda: {"tasks": "bfcl:simple_python"}),
    "functions-bfcl-multi": ("functions", lambda: {"tasks": "bfcl:multi_turn_base"}),
    "toy-digit": ("toy-digit", dict),
}

_PY_MISTAKES = [
    "<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{}<|call|>",
    "<|channel|>analysis to=browser.search code<|message|>{\"query\": \"x\"}<|call|>",
    "<|channel|>analysis<|message|>no recipient<|call|>",
    "<|channel|>analysis to=python code<|message|>1/0<|call|>",
    "<|channel|>analysis to=python code<|message|>x = 41<|call|>",
    "<|channel|>analysis to=python code<|message|>x + 1<|call|>",
    "<|channel|>analysis<|message|>thinking aloud<|end|>",
    "<|channel|>analysis<|message|>cut off here",
]
_BROWSER_MISTAKES = [
    "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
    "<|channel|>analysis to=browser code<|message|>{}<|call|>",
    "<|channel|>analysis to=browser.search code<|message|>{not json<|call|>",
    "<|channel|>analysis to=browser.open code<|message|>{\"id\": 99, \"cursor\": 7}<|call|>",
    "<|channel|>analysis to=browser.find code<|message|>{\"pattern\": \"the\"}<|call|>",
    "<|channel|>analysis to=browser.frobnicate code<|message|>{}<|call|>",
]
_FUNCTIONS_MISTAKES = [
    "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
    "<|channel|>commentary to=functions.no_such_fn <|constrain|>json<|message|>{}<|call|>",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{bad<|call|>",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    "{\"town\": \"Oslo\"}<|call|>",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    "{\"city\": \"Oslo\"}<|end|><|start|>assistant<|channel|>commentary to=functions.add_item "
    "<|constrain|>json<|message|>{\"item\": \"pen\"}<|call|>",
    "<|channel|>commentary to=functions.add_item <|constrain|>json<|message|>"
    "{\"item\": \"ink\"}<|call|>",
]
_ORACLE_TO_END = ["oracle"] * 40

#: (setup, seed, script). A script that ends before the episode does stops there.
EPISODES: list[tuple[str, int, list[str]]] = [
    *[("python-d1", s, _ORACLE_TO_END) for s in (0, 1, 2)],
    *[("python-d3-test", s, _ORACLE_TO_END) for s in (5, 6)],
    ("python-d1", 11, [*_PY_MISTAKES, *_ORACLE_TO_END]),
    ("python-retry", 3, ["<|channel|>final<|message|>I do not know.<|return|>",
                         *_ORACLE_TO_END]),
    ("python-d1", 12, ["garbage without any header<|call|>",
                       "<|channel|>final<|message|>\\boxed{7}<|return|>"]),
    ("python-cut-end", 4, ["<|channel|>analysis to=python code<|message|>print(2"]),
    *[("browser-d1", s, _ORACLE_TO_END) for s in (0, 1)],
    *[("browser-d3", s, _ORACLE_TO_END) for s in (2, 3)],
    ("browser-f1", 5, [*_BROWSER_MISTAKES, *_ORACLE_TO_END]),
    *[("functions-d1", s, _ORACLE_TO_END) for s in (0, 1)],
    *[("functions-d4", s, _ORACLE_TO_END) for s in (2, 3)],
    ("functions-user-tools", 7, [*_FUNCTIONS_MISTAKES, *_ORACLE_TO_END]),
    ("functions-bfcl-simple", 0, _ORACLE_TO_END),
    ("functions-bfcl-multi", 1, _ORACLE_TO_END),
    ("toy-digit", 0, ["8<|return|>"]),
    ("toy-digit", 1, ["<|channel|>analysis", "7<|return|>"]),
]

_DROP = {"duration_s"}


def clean_info(value: Any) -> Any:
    """``info`` as JSON, without wall-clock values."""
    from agent_envs.core import to_jsonable

    if isinstance(value, dict):
        return {k: clean_info(v) for k, v in value.items() if k not in _DROP}
    if isinstance(value, list):
        return [clean_info(v) for v in value]
    return to_jsonable(value)


def make_env(setup: str) -> Any:
    import agent_envs

    env_id, kwargs = SETUPS[setup]
    return agent_envs.make(env_id, **kwargs())


def record_episode(setup: str, seed: int, script: list[str]) -> dict[str, Any]:
    """Run one episode with today's code and return its recording."""
    from agent_envs.harmony import get_codec
    from agent_envs.oracle import Oracle

    codec, oracle = get_codec(), Oracle()
    env = make_env(setup)
    try:
        obs, info = env.reset(seed=seed)
        rec: dict[str, Any] = {"setup": setup, "seed": seed, "obs": obs.tolist(),
                               "info": clean_info(info), "steps": []}
        for item in script:
            action = oracle.act(obs, env.task) if item == "oracle" else codec.encode(item)
            nxt, reward, term, trunc, info = env.step(action)
            extends = (not info["new_segment"]
                       and nxt[: len(obs) + len(action)].tolist() == obs.tolist() + list(action))
            rec["steps"].append({
                "action": list(map(int, action)),
                "appended": nxt[len(obs) + len(action):].tolist() if extends else None,
                "obs": None if extends else nxt.tolist(),
                "reward": reward, "terminated": term, "truncated": trunc,
                "info": clean_info(info)})
            obs = nxt
            if term or trunc:
                break
        return rec
    finally:
        env.close()


def main() -> None:
    recs = []
    for setup, seed, script in EPISODES:
        rec = record_episode(setup, seed, script)
        last = rec["steps"][-1]
        print(f"{setup:<24} seed {seed:>2}: {len(rec['steps']):>2} steps, reward "
              f"{last['reward']:g}, {'terminated' if last['terminated'] else 'truncated'}")
        recs.append(rec)
    with gzip.open(DATA, "wt") as f:
        json.dump(recs, f, separators=(",", ":"))
    print(f"wrote {DATA} ({DATA.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
