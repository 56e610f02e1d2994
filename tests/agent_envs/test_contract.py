"""The environment contract, checked over every registered id (issue 19).

For each id: gymnasium's ``check_env``; an oracle episode whose every observation extends the
last (prefix extension), stays inside the vocabulary (``observation_space.contains``) and
ends solved, the same through the async twins; model mistakes (an unknown recipient, broken
harmony, a cut completion) are observations, never exceptions; an infrastructure fault of any
tool ends the episode flagged; ids outside the vocabulary are refused before they reach an
observation; a misspelt argument gets a did-you-mean.
"""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agent_envs
from agent_envs.errors import InvalidActionError, UnknownArgumentError
from agent_envs.harmony import VOCAB_SIZE, get_codec
from agent_envs.oracle import Oracle
from agent_envs.tools.base import ToolOutcome

CODEC = get_codec()
IDS = [s.id for s in agent_envs.list_envs()]
#: Arguments that keep an id's episodes short here (tau2's mock domain, the local sandbox).
ARGS: dict[str, dict] = {"tau2-v0": {"task_source": "mock", "split": "test"},
                         "python-tool-v0": {"sandbox": "local"}, "agent-v0": {"sandbox": "local"}}
MISTAKES = [
    "<|channel|>analysis to=no_such_tool code<|message|>hello<|call|>",
    "no header at all<|call|>",
    "<|channel|>analysis<|message|>a message the length limit cut",
]


def make(env_id: str, **kw):
    return agent_envs.make(env_id, **{**ARGS.get(env_id, {}), **kw})


def test_every_registered_family_is_covered():
    assert {"agent-v0", "python-tool-v0", "browser-v0", "functions-v0", "tau2-v0",
            "toy-digit-v0", "toy-pattern-v0", "toy-cycle-v0"} <= set(IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = agent_envs.make(env_id)
    try:
        check_env(env, skip_render_check=False)
    finally:
        env.close()


def _oracle_episode(env, seed: int) -> tuple[list[np.ndarray], float]:
    oracle, observations = Oracle(), []
    obs, info = env.reset(seed=seed)
    observations.append(obs)
    for _ in range(env.config.max_turns):
        action = oracle.act(obs, env.task)
        nxt, reward, term, trunc, info = env.step(action)
        if not info["new_segment"]:
            assert np.array_equal(nxt[: len(obs) + len(action)],
                                  np.concatenate([obs, np.asarray(action, dtype=np.int32)]))
            assert len(nxt) == len(obs) + len(action) + info["env_token_count"]
        assert info["model_error"] is None and info["infra_error"] is None
        obs = nxt
        observations.append(obs)
        if term or trunc:
            return observations, reward
    raise AssertionError("the oracle episode did not end within max_turns")


@pytest.mark.parametrize("env_id", IDS)
def test_an_oracle_episode_extends_its_prefix_stays_in_vocabulary_and_is_solved(env_id):
    env = make(env_id)
    try:
        observations, reward = _oracle_episode(env, seed=3)
        assert reward == 1.0
        for obs in observations:
            assert obs.dtype == np.int32 and env.observation_space.contains(obs)
            assert 0 <= int(obs.min()) and int(obs.max()) < VOCAB_SIZE
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_the_async_twins_give_the_same_observations(env_id):
    sync = make(env_id)
    try:
        expected, _ = _oracle_episode(sync, seed=4)
    finally:
        sync.close()

    async def run() -> list[np.ndarray]:
        env, oracle = make(env_id), Oracle()
        try:
            obs, _ = await env.areset(seed=4)
            out = [obs]
            while True:
                obs, _, term, trunc, _ = await env.astep(oracle.act(obs, env.task))
                out.append(obs)
                if term or trunc:
                    return out
        finally:
            await env.aclose()

    got = asyncio.run(run())
    assert [o.tolist() for o in got] == [o.tolist() for o in expected]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("mistake", MISTAKES, ids=["unknown-tool", "no-header", "cut"])
def test_a_model_mistake_is_an_observation(env_id, mistake):
    env = make(env_id)
    try:
        obs, _ = env.reset(seed=0)
        action = CODEC.encode(mistake)
        nxt, reward, term, trunc, info = env.step(action)
        assert env.observation_space.contains(nxt)
        if not info["new_segment"]:
            assert nxt[: len(obs) + len(action)].tolist() == obs.tolist() + action
        said = info["model_error"] or (info["tool_outcome"] or {}).get("error") \
            or (info["verdict"] or {}).get("reason")
        assert said, f"{env_id}: the mistake left no trace in info: {info}"
        assert info["infra_error"] is None
        if not (term or trunc):
            assert len(nxt) > len(obs) + len(action)  # the env answered it
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_an_unknown_recipient_names_every_tool_the_env_has(env_id):
    env = make(env_id)
    try:
        env.reset(seed=0)
        if not env.tools:
            pytest.skip(f"{env_id} has no tools: a call is a format mistake there")
        env.step(MISTAKES[0])
        text = env.messages[-1].content[0].text
        assert text.startswith("Error: there is no tool 'no_such_tool' in this environment.")
        assert all(name in text for name in env.tool_names()) and env.tool_names()
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_an_infrastructure_fault_of_any_tool_ends_the_episode_flagged(env_id):
    env = make(env_id)
    try:
        env.reset(seed=0)
        if not env.tools:
            pytest.skip(f"{env_id} has no tools, so no tool infrastructure to fail")
        for part in env.tools:
            fault = ToolOutcome(text="", ok=False, infra_error=f"{part.name} backend down")
            part.call = lambda call, fault=fault: fault
            env.reset(seed=0)
            recipient = part.recipients()[0]
            _, reward, term, trunc, info = env.step(
                f"<|channel|>commentary to={recipient} <|constrain|>json<|message|>{{}}<|call|>")
            assert (term, trunc, reward) == (False, True, 0.0)
            assert info["truncated_reason"] == "infra"
            assert info["infra_error"] == f"{part.name} backend down"
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_token_ids_outside_the_vocabulary_never_reach_an_observation(env_id):
    env = make(env_id)
    try:
        obs, _ = env.reset(seed=0)
        for bad in ([VOCAB_SIZE], [5, -1], [2**31]):
            with pytest.raises(InvalidActionError, match="outside the gpt-oss vocabulary|int32"):
                env.step(bad)
        ok = CODEC.encode(MISTAKES[0])
        nxt, *_ = env.step(ok)  # the refused actions left nothing behind
        assert nxt[: len(obs) + len(ok)].tolist() == obs.tolist() + ok
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_a_misspelt_argument_gets_a_did_you_mean(env_id):
    with pytest.raises(UnknownArgumentError, match=re.escape("did you mean 'max_turns'?")):
        agent_envs.make(env_id, max_turnz=3)
