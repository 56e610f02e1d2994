"""verifiers' own, unmodified ``OpenEnvTaskset`` and ``OpenEnvEnv`` drive our env server.

What runs is verifiers 0.4.0's code: the taskset builds one task per reset from its config,
and ``OpenEnvEnv.run`` connects OpenEnv's ``GenericEnvClient`` (openenv 0.4.1) to the server
with the token in the base URL, reads ``/schema`` over httpx, resets, puts
``{"observation", "action_schema"}`` into the model's user turn, turns each reply into an
action with its ``parse_action`` and sums the step rewards into ``openenv_reward``. The one
scripted part is the model behind the turn (no LLM or harness program runs here): it replies
with our oracle's completion as text, computed on an in-process env of the same seed, and
records every user turn it was shown, so the tests can check that no secret reached it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from verifiers.v1.agent import Segment
from verifiers.v1.tasksets.openenv import OpenEnvConfig, OpenEnvEnv, OpenEnvEnvConfig
from verifiers.v1.tasksets.openenv.taskset import parse_action
from verifiers.v1.types import AssistantMessage

import agent_envs
from agent_envs.core import to_jsonable
from agent_envs.harmony import get_codec
from agent_envs.oracle import Oracle

CODEC = get_codec()

#: Task fields only the verifier knows (answers, solutions, evidence, expected calls, hidden
#: world state); ``more_turns`` are revealed turn by turn, by design.
HIDDEN_FIELDS = ("answer", "aliases", "solution_code", "evidence", "expected_calls", "configs",
                 "plan", "expected_state", "answers", "ground_truth", "initial_config")

FAMILIES = [  # (env id, server --env-arg values, in-process kwargs)
    ("python-tool", ("sandbox=local",), {"sandbox": "local"}),
    ("browser", (), {}),
    ("functions", (), {}),
]
SEEDS = (0, 1, 2)


class ScriptedTrace:
    """Stands in for verifiers' ``Trace`` in a scripted turn: rewards and the stop reason."""

    def __init__(self) -> None:
        self.rewards: dict[str, float] = {}
        self.stop_condition: str | None = None

    def record_reward(self, name: str, value: float, weight: float = 1.0) -> None:
        self.rewards[name] = float(value) * weight

    def stop(self, condition: str, override: bool = False) -> None:
        if override or self.stop_condition is None:
            self.stop_condition = condition


class ScriptedInteraction:
    """One episode's model: ``turn(user_text)`` records the text, returns the scripted reply
    as verifiers' own ``Segment`` (whose ``last_reply`` the env reads)."""

    def __init__(self, script: Iterator[str]) -> None:
        self.trace = ScriptedTrace()
        self.turns: list[str] = []
        self._script = script

    async def turn(self, message: str) -> Segment:
        self.turns.append(message)
        reply = next(self._script, None)
        if reply is None:
            return Segment(messages=[], terminated=True)
        return Segment(messages=[AssistantMessage(content=reply)])


class ScriptedPlayer:
    """``agents.player``: opens a scripted interaction per task."""

    def __init__(self, script_for: Callable[[Any], Iterator[str]]) -> None:
        self.script_for = script_for
        self.interactions: list[ScriptedInteraction] = []

    @contextlib.asynccontextmanager
    async def interaction(self, task: Any) -> AsyncIterator[ScriptedInteraction]:
        it = ScriptedInteraction(self.script_for(task))
        self.interactions.append(it)
        yield it


@dataclasses.dataclass
class ScriptedAgents:
    player: ScriptedPlayer


def oracle_script(env_id: str, kwargs: dict[str, Any], seed: int, *, wrong: bool,
                  first: str | None = None) -> tuple[Iterator[str], list[float]]:
    """The scripted model's replies for one episode: our oracle's completions, as text, on
    an in-process env of the same seed (its rewards land in the returned list). ``first``:
    a reply to give before the oracle's."""
    rewards: list[float] = []

    def replies() -> Iterator[str]:
        if first is not None:
            yield first
        env = agent_envs.make(env_id, **kwargs)
        oracle = Oracle(wrong=wrong)
        try:
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                action = oracle.act(obs, env.task)
                obs, reward, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
                if done:  # the harness stops asking once the server says done
                    rewards.append(float(reward))
                yield CODEC.decode(action)
        finally:
            env.close()

    return replies(), rewards


def in_process_reward(env_id: str, kwargs: dict[str, Any], seed: int, *, wrong: bool) -> float:
    env = agent_envs.make(env_id, **kwargs)
    oracle = Oracle(wrong=wrong)
    try:
        obs, _ = env.reset(seed=seed)
        done, reward = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(oracle.act(obs, env.task))
            done = terminated or truncated
        return float(reward)
    finally:
        env.close()


def secrets_of(env_id: str, kwargs: dict[str, Any], seed: int) -> tuple[Any, list[str]]:
    """The task, and its hidden values the model is not shown at reset."""
    env = agent_envs.make(env_id, **kwargs)
    try:
        obs, _ = env.reset(seed=seed)
        task, shown = env.task, CODEC.decode(obs)
    finally:
        env.close()
    fields = {f.name for f in dataclasses.fields(task)}
    hidden: set[str] = set()
    for name in HIDDEN_FIELDS:
        value = to_jsonable(getattr(task, name)) if name in fields else None
        if not value:
            continue
        hidden.update(s for s in _leaves(value) if len(s) >= 4 and s not in shown)
        if not isinstance(value, str):
            hidden.update(j for j in (json.dumps(value), json.dumps(value, separators=(",", ":")))
                          if len(j) >= 8)
    return task, sorted(hidden, key=len, reverse=True)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value).strip()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def assert_no_secret_in_turn(turn: str, task: Any, hidden: list[str], *, first: bool) -> None:
    """A user turn holds no hidden value, and no string in it is (or, for answers of 4+
    characters, contains) the answer. The decoded conversation text is checked in the first
    turn (the env's prompt: long values only, it may mention short numbers); later it holds
    what the scripted model itself wrote (the oracle's solution) and the tool results it
    asked for (the evidence page it opened), which are the model's to see."""
    payload = json.loads(turn)
    obs = payload["observation"]
    assert obs.get("task") is None and obs.get("task_class") is None
    answer = task.answer.strip()
    for s in _strings(payload):
        is_text = s == obs.get("text")
        if is_text and not first:
            continue
        leaked = [h for h in hidden if (len(h) >= 8 or not is_text) and h in s]
        if answer and not is_text and (s.strip() == answer or (len(answer) >= 4 and answer in s)):
            leaked.append(answer)
        assert not leaked, f"{task.id}: the model's turn holds {leaked[:3]} in {s[:200]!r}"


def make_env(server_url: str, seeds: tuple[int, ...]) -> OpenEnvEnv:
    """verifiers' env for our server, from its own config classes, one task per seed."""
    config = OpenEnvEnvConfig(taskset=OpenEnvConfig(
        id="openenv", base_url=server_url, resets=[{"seed": s} for s in seeds]))
    return OpenEnvEnv(config)


@pytest.mark.parametrize(("env_id", "env_args", "kwargs"), FAMILIES,
                         ids=[f[0] for f in FAMILIES])
@pytest.mark.parametrize("wrong", [False, True], ids=["oracle", "wrong-oracle"])
async def test_openenv_taskset_drives_episodes_to_the_in_process_rewards(
        env_server, env_id, env_args, kwargs, wrong) -> None:
    server = env_server(env_id, *env_args)
    env = make_env(server.authed_url, SEEDS)
    tasks = list(env.taskset)
    assert [t.data.reset for t in tasks] == [{"seed": s} for s in SEEDS]
    script_rewards: dict[int, list[float]] = {}

    def script_for(task: Any) -> Iterator[str]:
        seed = task.data.reset["seed"]
        script, script_rewards[seed] = oracle_script(env_id, kwargs, seed, wrong=wrong)
        return script

    player = ScriptedPlayer(script_for)
    for task in tasks:
        await env.run(task, ScriptedAgents(player))
    for seed, it in zip(SEEDS, player.interactions, strict=True):
        want = in_process_reward(env_id, kwargs, seed, wrong=wrong)
        assert want == (0.0 if wrong else 1.0)
        assert it.trace.rewards == {"openenv_reward": want}, (seed, it.trace.rewards)
        assert script_rewards[seed] == [want]  # the script's own env agrees
        assert it.trace.stop_condition is None  # ended by the env's done, not by the script
        task, hidden = secrets_of(env_id, kwargs, seed)
        assert len(it.turns) >= 2  # reset, then at least one observation after a step
        first = json.loads(it.turns[0])
        assert first["action_schema"]["required"] == ["text"]
        assert first["observation"]["task_meta"]["id"] == task.id
        assert first["observation"]["text"].endswith("<|start|>assistant")
        for i, turn in enumerate(it.turns):
            assert_no_secret_in_turn(turn, task, hidden, first=i == 0)
        print(f"verifiers OpenEnvTaskset {env_id} seed {seed} "
              f"{'wrong-oracle' if wrong else 'oracle'}: task {task.id}, {len(it.turns)} "
              f"user turns, openenv_reward {it.trace.rewards['openenv_reward']} "
              f"(in-process {want})")


async def test_a_json_reply_is_taken_as_text_and_the_episode_goes_on(env_server) -> None:
    """A reply that is JSON (``2``) reaches the server as ``{"text": 2}``: the model gets the
    env's format error as its next observation (a model mistake, in-band), not a failed run."""
    server = env_server("python-tool", "sandbox=local")
    kwargs = {"sandbox": "local"}
    env = make_env(server.authed_url, (5,))
    (task,) = list(env.taskset)
    schema_action = parse_action("2", {"required": ["text"]})
    assert schema_action == {"text": 2}
    script, rewards = oracle_script("python-tool", kwargs, 5, wrong=False, first="2")
    player = ScriptedPlayer(lambda _task: script)
    await env.run(task, ScriptedAgents(player))
    (it,) = player.interactions
    after = json.loads(it.turns[1])["observation"]
    assert after["error"] is None
    assert after["info"]["model_error"] and "<|start|>system<|message|>Your last message was " \
        "cut off" in after["text"]  # "2" has no stop token: the env's notice, in-band
    assert it.trace.rewards == {"openenv_reward": 1.0} and rewards == [1.0]
