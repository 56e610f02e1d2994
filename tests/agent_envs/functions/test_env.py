from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

import agent_envs
from agent_envs.envs.functions import FunctionsEnv, StatefulTools, tool
from agent_envs.envs.functions.oracle import call_text, final_text
from agent_envs.envs.functions.runtime import serialize_result, truncate
from agent_envs.harmony import get_codec, message_text
from agent_envs.tasks import save_tasks
from agent_envs.tasks.base import Task


def get_weather(city: str, unit: str = "celsius") -> dict:
    """Current weather.

    Args:
        city: City name.
        unit: celsius or fahrenheit.
    """
    return {"city": city, "temp": 21 if unit == "celsius" else 70, "unit": unit}


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "woke up"


async def aslow(seconds: float) -> str:
    """Sleep asynchronously, then answer."""
    await asyncio.sleep(seconds)
    return "woke up"


def big() -> str:
    """A long text."""
    return "x" * 50_000


class Cart:
    """A stateful tool: items in a cart."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add_item(self, item: str) -> list[str]:
        """Add an item.

        Args:
            item: The item.
        """
        self.items.append(item)
        return list(self.items)


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "tasks.jsonl"
    save_tasks(path, [Task(id="w1", prompt="Weather in Oslo?", answer="21",
                           meta={"expected_calls": [{"name": "get_weather",
                                                     "arguments": {"city": "Oslo"}}]})])
    e = FunctionsEnv(tools=[get_weather, divide, slow, aslow, big, Cart,
                            {"name": "lookup.v2", "parameters": {"type": "object", "properties": {
                                "q": {"type": "string"}}, "required": ["q"]},
                             "fn": lambda q: {"hits": sorted({q, "b", "a"})}}],
                     tasks=f"jsonl:{path}", call_timeout_s=0.5, max_result_chars=1000)
    yield e
    e.close()


def _call(env, name, args_text, ctype=" <|constrain|>json"):
    obs, _ = env.reset(seed=0)
    text = (f"<|channel|>commentary to=functions.{name}{ctype}<|message|>{args_text}<|call|>")
    nxt, _reward, term, trunc, info = env.step(text)
    action = get_codec().encode(text)
    # prefix extension: the env only appends
    assert np.array_equal(nxt[: len(obs) + len(action)], np.concatenate([obs, action]))
    last = get_codec().parse_conversation(nxt)[-1]
    assert last.author.name == f"functions.{name}" and last.recipient == "assistant"
    assert last.channel == "commentary"
    return message_text(last), info, term, trunc


def test_valid_call_runs_and_result_is_json(env):
    text, info, term, trunc = _call(env, "get_weather", '{"city": "Oslo"}')
    assert json.loads(text) == {"city": "Oslo", "temp": 21, "unit": "celsius"}
    assert text == '{"city": "Oslo", "temp": 21, "unit": "celsius"}'  # sorted keys
    assert info["tool_outcome"]["ok"] and not term and not trunc
    assert info["functions"]["errors"] == {} and info["functions"]["calls"] == 1


@pytest.mark.parametrize("name,args,ctype,kind,needle", [
    ("get_weather", '{"city": "Oslo",', " <|constrain|>json", "json", "not valid JSON"),
    ("get_weather", '["Oslo"]', " <|constrain|>json", "json", "must be one JSON object"),
    ("get_wether", '{"city": "Oslo"}', " <|constrain|>json", "unknown_function",
     "Did you mean 'get_weather'?"),
    ("get_weather", '{"town": "Oslo"}', " <|constrain|>json", "schema",
     "$: 'city' is a required property"),
    ("get_weather", '{"city": 5}', " <|constrain|>json", "schema", "$.city: 5 is not of type"),
    ("divide", '{"a": 1, "b": 0}', " <|constrain|>json", "exception",
     "divide raised ZeroDivisionError: float division by zero"),
    ("slow", '{"seconds": 3}', " <|constrain|>json", "timeout", "did not return within 0.5"),
    ("aslow", '{"seconds": 3}', " <|constrain|>json", "timeout", "did not return within 0.5"),
    ("get_weather", "city: Oslo", " <|constrain|>yaml", "constrain", "must be JSON"),
])
def test_every_failure_is_an_observation(env, name, args, ctype, kind, needle):
    t0 = time.perf_counter()
    text, info, term, trunc = _call(env, name, args, ctype)
    assert text.startswith("Error: ") and needle in text, text
    assert not term and not trunc and info["model_error"] is None
    assert info["tool_outcome"]["ok"] is False
    assert info["functions"]["errors"] == {kind: 1}
    assert info["tool_outcome"]["timed_out"] == (kind == "timeout")
    assert time.perf_counter() - t0 < 2.5  # a timeout does not wait for the function


def test_exception_shows_a_traceback_tail_without_host_paths(env):
    text, *_ = _call(env, "divide", '{"a": 1, "b": 0}')
    assert 'File "test_env.py"' in text and "return a / b" in text and "/work/" not in text


def test_megabyte_argument_and_garbage_tokens_are_observations(env, capfd):
    codec = get_codec()
    env.reset(seed=0)
    chunk = codec.encode("abcdefgh")
    assert len(chunk) == 1 and codec.decode(chunk) == "abcdefgh"
    ids = (codec.encode('<|channel|>commentary to=functions.get_weather <|constrain|>json'
                        '<|message|>{"city": "') + chunk * 125_000 + codec.encode('"}<|call|>'))
    nxt, _, term, trunc, info = env.step(ids)
    text = message_text(codec.parse_conversation(nxt)[-1])
    assert "arguments are 1000012 characters long; the limit is 65536" in text
    # issue 18: no Rust panic (tiktoken's StackOverflow) on stderr, which openai-harmony's
    # encoder printed for megabyte runs.
    assert "panicked" not in capfd.readouterr().err
    assert info["functions"]["errors"] == {"too_large": 1} and not term
    # 125k tokens in one completion exceed the 64k token budget: truncated, not raised
    assert trunc and info["truncated_reason"] == "tokens"
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 200_000, 300).tolist() + [200012]
    _obs, _r, term, trunc, info = env.step(garbage)
    assert info["model_error"] and not term


def test_result_is_truncated_with_a_marker(env):
    text, *_ = _call(env, "big", "{}")
    assert "characters truncated ...]" in text and len(text) < 1100


def test_name_harmony_cannot_carry_is_mapped_and_recorded(env):
    _, info = env.reset(seed=0)
    assert info["functions"]["renamed"] == {"lookup.v2": "lookup_v2"}
    text, info, *_ = _call(env, "lookup_v2", '{"q": "c"}')
    assert json.loads(text) == {"hits": ["a", "b", "c"]}
    assert env.episode.calls[-1].name == "lookup.v2"


def test_stateful_class_is_fresh_every_episode(env):
    _call(env, "add_item", '{"item": "apple"}')
    text, *_ = _call(env, "add_item", '{"item": "pear"}')  # _call resets first
    assert json.loads(text) == ["pear"]


def test_calls_run_in_order_and_episode_is_judged(env):
    env.reset(seed=0)
    for text in [call_text("add_item", {"item": "a"}), call_text("add_item", {"item": "b"}),
                 call_text("get_weather", {"city": "Oslo"}), final_text("The answer is 21.")]:
        _obs, reward, term, _trunc, info = env.step(text)
    assert term and reward == 1.0 and info["verdict"]["correct"]
    assert [c.name for c in env.episode.calls] == ["add_item", "add_item", "get_weather"]
    assert env.episode.calls[1].value == ["a", "b"]


def test_expected_call_missing_scores_zero(env):
    env.reset(seed=0)
    *_, term, _trunc, info = env.step(final_text("It is 21 degrees."))
    assert term and info["reward_components"] == {"correct": 0.0}
    assert "expected call get_weather" in info["verdict"]["reason"]


async def test_async_twins_run_async_tools(env):
    obs, _ = await env.areset(seed=0)
    obs, _, _, _, info = await env.astep(call_text("aslow", {"seconds": 0.01}))
    assert info["tool_outcome"]["ok"]
    assert message_text(get_codec().parse_conversation(obs)[-1]) == "woke up"
    obs, _r, _term, _trunc, info = await env.astep(call_text("slow", {"seconds": 3}))
    assert info["functions"]["errors"] == {"timeout": 1}


def test_serialisation_is_deterministic():
    assert serialize_result({"b": 1, "a": {3, 1, 2}}) == '{"a": [1, 2, 3], "b": 1}'
    assert serialize_result("plain") == "plain"
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        serialize_result(object())
    assert truncate("abcdefghij" * 20, 100).count("truncated") == 1


def test_make_accepts_tasks_and_task_source_and_rejects_both():
    a = agent_envs.make("functions", tasks="procedural", difficulty=2)
    b = agent_envs.make("functions", task_source="procedural", difficulty=2)
    assert np.array_equal(a.reset(seed=4)[0], b.reset(seed=4)[0])
    with pytest.raises(TypeError, match="same argument"):
        agent_envs.make("functions", tasks="procedural", task_source="bfcl")
    with pytest.raises(TypeError, match="did you mean 'call_timeout_s'"):
        agent_envs.make("functions", call_timeout=1)


def test_user_stateful_tools_with_config():
    env = FunctionsEnv(tools=[StatefulTools(Cart), tool(get_weather)], tasks="procedural")
    env.reset(seed=0)
    assert {"add_item", "get_weather"} <= set(env.toolset.harmony_names())


def test_no_model_output_reaches_eval_or_exec():
    import ast
    from pathlib import Path

    import agent_envs.envs.functions as pkg
    root = Path(pkg.__file__).parent
    sources = sorted(root.rglob("*.py"))
    assert len(sources) >= 10
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "compile"), (path, node.lineno)


def test_gymnasium_make_by_namespaced_id():
    import gymnasium

    from agent_envs.oracle import Oracle
    e = gymnasium.make("agent_envs/functions-v0", tasks="procedural", difficulty=2)
    obs, info = e.reset(seed=1)
    assert obs.dtype == np.int32 and info["env_id"] == "functions-v0"
    oracle = Oracle()
    while True:
        obs, reward, term, trunc, info = e.step(oracle.act(obs, e.unwrapped.task))
        if term or trunc:
            break
    assert reward == 1.0 and info["verdict"]["correct"]
    e.close()


def test_oracle_follows_expected_calls_to_user_tools_with_mapped_names(tmp_path):
    from agent_envs.oracle import Oracle
    path = tmp_path / "t.jsonl"
    save_tasks(path, [Task(id="q", prompt="Look up c.", answer="", meta={
        "expected_calls": [{"name": "lookup.v2", "arguments": {"q": "c"}}]})])
    env = FunctionsEnv(tools=[{"name": "lookup.v2", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}, "fn": lambda q: q}],
        tasks=f"jsonl:{path}")
    obs, _ = env.reset(seed=0)
    oracle = Oracle()
    while True:
        obs, reward, term, trunc, _info = env.step(oracle.act(obs, env.task))
        if term or trunc:
            break
    assert reward == 1.0 and env.episode.calls[0].harmony_name == "lookup_v2"


def test_a_second_call_in_one_completion_is_reported_not_silently_dropped(env):
    env.reset(seed=0)
    text = ('<|channel|>commentary to=functions.add_item <|constrain|>json<|message|>'
            '{"item": "a"}<|end|><|start|>assistant<|channel|>commentary '
            'to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>')
    obs, _, term, _, info = env.step(text)
    last = message_text(get_codec().parse_conversation(obs)[-1])
    assert last.startswith("Note: only the last call of a message runs; functions.add_item "
                           "did not run.")
    assert '"city": "Oslo"' in last and not term
    assert "earlier call(s) in the same completion were not run" in info["model_error"]
    assert info["functions"]["errors"] == {"not_run": 1}
    assert [c.name for c in env.episode.calls] == ["get_weather"]


def test_procedural_knobs_with_bfcl_or_jsonl_tasks_are_errors(tmp_path):
    # Before: difficulty was ignored silently with jsonl: (and bfcl) tasks.
    import re

    with pytest.raises(ValueError, match=re.escape(
            "difficulty=3 applies to procedural tasks only, not to task source 'jsonl:")):
        agent_envs.make("functions", task_source=f"jsonl:{tmp_path / 'calls.jsonl'}",
                        difficulty=3)
    with pytest.raises(ValueError, match=re.escape(
            "sets=['shop'] applies to procedural tasks only, not to task source 'bfcl'")):
        agent_envs.make("functions", tasks="bfcl", sets=["shop"])
    with pytest.raises(agent_envs.UnknownArgumentError, match=re.escape(
            "functions-v0 got an unknown argument 'max_turnz'; did you mean 'max_turns'?")):
        agent_envs.make("functions", max_turnz=3)
    env = agent_envs.make("functions", difficulty=2)  # procedural: taken
    assert env.task_source.difficulty == 2
    env.close()
