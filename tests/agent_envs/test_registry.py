"""``make`` checks env arguments before anything runs (issue 18): one did-you-mean for every
env id, values checked by name, and the checks a config or server can run without making."""

from __future__ import annotations

import re

import numpy as np
import pytest

import agent_envs
from agent_envs import InvalidActionError, MissingDependencyError, UnknownArgumentError
from agent_envs.core import EnvConfig, check_arguments
from agent_envs.harmony import VOCAB_SIZE
from agent_envs.registry import check_env_kwargs


def _spec_ids() -> list[str]:
    return [s.id for s in agent_envs.list_envs()]


@pytest.mark.parametrize("env_id", _spec_ids())
def test_every_env_id_gives_one_did_you_mean_for_a_misspelt_argument(env_id: str) -> None:
    # Before: toy envs raised a raw "EnvConfig.__init__() got an unexpected keyword argument".
    try:
        agent_envs.spec(env_id).load()
    except MissingDependencyError as e:
        pytest.skip(str(e))
    want = re.escape(f"{env_id} got an unknown argument 'max_turnz'; did you mean 'max_turns'? "
                     f"Its arguments: ")
    with pytest.raises(UnknownArgumentError, match=want):
        agent_envs.make(env_id, max_turnz=3)
    with pytest.raises(UnknownArgumentError, match=want):
        check_env_kwargs(env_id, {"max_turnz": 3})  # the same check, nothing made
    check_env_kwargs(env_id, {"max_turns": 3})
    assert isinstance(UnknownArgumentError("x"), TypeError)  # callers catching TypeError


def test_python_tool_suggests_its_own_config_fields() -> None:
    with pytest.raises(UnknownArgumentError, match=re.escape(
            "python-tool-v0 got an unknown argument 'max_turnz'; did you mean 'max_turns'?")):
        agent_envs.make("python-tool", max_turnz=3)
    with pytest.raises(UnknownArgumentError, match=re.escape("did you mean 'memory_mb'?")):
        agent_envs.make("python-tool", memory_m=512)


def test_an_env_that_makes_its_own_tasks_says_so_for_task_source() -> None:
    # Before: "PrefilledDigitsEnv.__init__() got multiple values for argument 'task_source'".
    with pytest.raises(UnknownArgumentError, match=re.escape(
            "toy-digit-v0 takes no task_source argument: it makes its own tasks. Drop "
            "task_source= (on the command line: --tasks)")):
        agent_envs.make("toy-digit", task_source="gsm8k")


def test_check_arguments_without_a_close_name_lists_the_arguments() -> None:
    with pytest.raises(UnknownArgumentError, match=re.escape(
            "demo-v0 got an unknown argument 'zzz'. Its arguments: alpha, beta")):
        check_arguments("demo-v0", ["zzz"], ["beta", "alpha"])
    check_arguments("demo-v0", ["alpha"], ["alpha"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_turns": "abc"}, "max_turns must be an int, got 'abc' (str)"),
    ({"max_turns": True}, "max_turns must be an int, got True (bool)"),
    ({"max_episode_s": "1h"}, "max_episode_s must be a number, got '1h' (str)"),
    ({"reasoning_effort": "max"},
     "reasoning_effort must be 'low' or 'medium' or 'high', got 'max' (str)"),
    ({"conversation_date": "yesterday"},
     "conversation_date must be an ISO date YYYY-MM-DD, e.g. "),
    ({"conversation_date": "2025-02-30"}, "got '2025-02-30': day is out of range for month"),
    ({"conversation_date": "28/06/2025"}, "conversation_date must be an ISO date YYYY-MM-DD"),
])
def test_config_values_are_checked_by_name(kwargs: dict, message: str) -> None:
    # Before: max_turns='abc' said "invalid literal for int() with base 10: 'abc'", and
    # conversation_date='yesterday' rendered as "Current date: yesterday".
    with pytest.raises(ValueError, match=re.escape(message)):
        EnvConfig(**kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        agent_envs.make("toy-digit", **kwargs)


def test_an_iso_conversation_date_is_rendered() -> None:
    env = agent_envs.make("toy-digit", conversation_date="2025-06-28")
    obs, _ = env.reset(seed=0)
    assert "Current date: 2025-06-28" in env.codec.decode(obs)


@pytest.mark.parametrize("bad", [[300000], [-5], [200005, VOCAB_SIZE, 17]])
def test_out_of_vocabulary_token_ids_are_refused_and_never_observed(bad: list[int]) -> None:
    # Before: copied into the next observation (observation_space.contains(obs) was False),
    # while the server refused the same action: local and remote now raise the same error.
    env = agent_envs.make("toy-digit")
    obs, _ = env.reset(seed=0)
    wrong = [t for t in bad if not 0 <= t < VOCAB_SIZE]
    with pytest.raises(InvalidActionError, match=re.escape(
            f"action has token id(s) outside the gpt-oss vocabulary [0, {VOCAB_SIZE}): "
            f"{', '.join(map(str, wrong))};")):
        env.step(bad)
    with pytest.raises(InvalidActionError):
        env.step(np.asarray(bad, dtype=np.int64))
    # Nothing was appended; the episode goes on with a valid action.
    assert env.tokens.tolist() == obs.tolist()
    obs2, reward, terminated, _, _ = env.step("7<|return|>")
    assert terminated and reward == 1.0 and env.observation_space.contains(obs2)


def test_many_out_of_vocabulary_ids_are_counted_not_all_listed() -> None:
    env = agent_envs.make("toy-digit")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=re.escape(
            f"[0, {VOCAB_SIZE}): {VOCAB_SIZE}, {VOCAB_SIZE + 1}, {VOCAB_SIZE + 2}, "
            f"{VOCAB_SIZE + 3}, {VOCAB_SIZE + 4}, ... (7 in all);")):
        env.step(list(range(VOCAB_SIZE, VOCAB_SIZE + 7)))


_HIDE_EXTRAS = r'''
import importlib.abc, sys
EXTRAS = {"docstring_parser", "jsonschema", "bm25s", "lxml", "html2text", "tantivy", "orjson",
          "datasets", "pyarrow", "docker", "torch", "transformers", "ray", "matplotlib",
          "fastapi", "uvicorn", "websockets", "openenv", "gguf", "tiktoken", "loguru", "pandas"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
import agent_envs
from agent_envs.oracle import Oracle
env = agent_envs.make("python-tool", sandbox="local")
obs, info = env.reset(seed=0)
assert len(obs) > 0 and "task_id" in info, info
env.close()
for name, extra in (("functions", "functions"), ("browser", "browser")):
    try:
        agent_envs.make(name)
    except agent_envs.MissingDependencyError as e:
        assert f"pip install 'agent-envs[{extra}]'" in str(e), e
    else:
        raise AssertionError(name + " made without its extra")
print("BARE-OK", sorted(m for m in sys.modules if m.split(".")[0] in EXTRAS))
'''


def test_python_tool_needs_no_extra() -> None:
    """A bare ``pip install agent-envs`` (no extras) makes and resets python-tool; the envs
    that need an extra say which. Before: python-tool imported the functions family (through
    agent-v0's oracle) and failed on docstring_parser."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _HIDE_EXTRAS], capture_output=True, text=True,
                         check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BARE-OK []" in out.stdout
