from __future__ import annotations

import asyncio
import re

import gymnasium
import numpy as np
import openai_harmony as oh
import pytest
from gymnasium.utils.env_checker import check_env

import agent_envs
from agent_envs import EnvStateError, InvalidActionError, UnknownEnvError
from agent_envs.harmony import CALL, get_codec, message_text
from agent_envs.oracle import Oracle
from sandboxes import Limits, make_sandbox


@pytest.fixture
def env():
    e = agent_envs.make("python-tool", difficulty=1, call_timeout_s=5.0)
    yield e
    e.close()


def _same_message(a: oh.Message, b: oh.Message) -> bool:
    # Parsing gives system/developer content back as text, so compare what each renders to.
    codec = get_codec()
    return (a.author.role == b.author.role and a.author.name == b.author.name
            and a.channel == b.channel and a.recipient == b.recipient
            and codec.render_message(a) == codec.render_message(b))


def run_oracle(env, seed, oracle=None):
    """Run one oracle episode, checking prefix extension at every step."""
    oracle = oracle or Oracle()
    obs, info = env.reset(seed=seed)
    steps = []
    while True:
        action = oracle.act(obs, env.task)
        nxt, reward, term, trunc, info = env.step(action)
        if not info["new_segment"]:
            assert np.array_equal(nxt[: len(obs) + len(action)],
                                  np.concatenate([obs, np.asarray(action, dtype=np.int32)]))
            assert len(nxt) == len(obs) + len(action) + info["env_token_count"]
        steps.append(info)
        obs = nxt
        if term or trunc:
            return obs, reward, term, trunc, info, steps


def test_gymnasium_make_by_namespaced_id():
    e = gymnasium.make("agent_envs/python-tool-v0", difficulty=1)
    try:
        obs, info = e.reset(seed=3)
        assert obs.dtype == np.int32 and info["env_id"] == "python-tool-v0"
        assert tuple(obs[-2:]) == get_codec().assistant_header
    finally:
        e.close()


def test_seeded_resets_are_reproducible(env):
    a, ia = env.reset(seed=11)
    b, ib = env.reset(seed=11)
    c, ic = env.reset(seed=12)
    assert np.array_equal(a, b) and ia["task_id"] == ib["task_id"]
    assert ic["task_id"] != ia["task_id"]
    d, _ = env.reset(options={"task_id": ia["task_id"]})
    assert np.array_equal(a, d)


def test_oracle_episode_token_stream_parses_back_to_the_envs_messages(env):
    obs, reward, term, trunc, info, steps = run_oracle(env, seed=5)
    assert term and not trunc and reward == 1.0
    parsed = get_codec().parse_conversation(obs)
    assert len(parsed) == len(env.messages)
    assert all(_same_message(p, m) for p, m in zip(parsed, env.messages))
    roles = [(m.author.role.value, m.channel, m.recipient) for m in parsed]
    assert ("tool", "analysis", "assistant") in roles
    assert roles[-1] == ("assistant", "final", None)
    assert steps[0]["tool_outcome"]["ok"] and steps[0]["tool_calls"] == 1
    assert info["verdict"]["correct"] and info["reward_components"] == {"correct": 1.0}


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_oracle_solves_procedural_tasks_through_the_real_sandbox(difficulty):
    e = agent_envs.make("python-tool", difficulty=difficulty)
    try:
        results = [run_oracle(e, seed)[1:] for seed in range(40)]
    finally:
        e.close()
    solved = sum(r[0] == 1.0 for r in results)
    assert all(r[-2]["infra_error"] is None for r in results)
    assert solved >= 39, [r[3]["verdict"] for r in results if r[0] != 1.0]


def test_wrong_answers_get_zero_on_every_family():
    e = agent_envs.make("python-tool", difficulty=1)
    try:
        for seed in range(40):  # covers every answer kind: ints, fractions, weekday names
            _, reward, term, _, info, _ = run_oracle(e, seed=seed, oracle=Oracle(wrong=True))
            assert term and reward == 0.0 and info["verdict"]["correct"] is False, info
    finally:
        e.close()


def _step_text(env, text):
    obs, info = env.reset(seed=1)
    out = env.step(text)
    assert np.array_equal(out[0][: len(obs)], obs)
    return out


def test_bad_header_is_an_observation(env):
    obs, reward, term, trunc, info = _step_text(env, "hello there<|call|>")
    assert not term and not trunc and "malformed harmony" in info["model_error"]
    # The model's broken header stays in the stream (never re-encoded); the notice follows it.
    text = get_codec().decode(obs)
    assert text.endswith("<|start|>assistanthello there<|call|><|start|>system<|message|>"
                         f"Format error: {info['model_error']}. Write each message as "
                         "<|channel|>analysis|commentary|final<|message|>TEXT, end a tool call "
                         "with <|call|> and the final answer with <|return|>.<|end|>"
                         "<|start|>assistant")


def test_unknown_recipient_is_an_observation(env):
    obs, reward, term, trunc, info = _step_text(
        env, '<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{}<|call|>')
    assert not term and not trunc
    assert info["tool_outcome"]["ok"] is False
    assert "unknown recipient 'functions.lookup'" == info["tool_outcome"]["error"]
    last = get_codec().parse_conversation(obs)[-1]
    assert last.author.name == "functions.lookup" and "Available tools: python" in message_text(last)


def test_non_stop_ending_is_closed_and_noticed(env):
    obs, reward, term, trunc, info = _step_text(env, "<|channel|>analysis<|message|>let me think")
    assert not term and not trunc and "cut before a stop token" in info["model_error"]
    text = get_codec().decode(obs)
    assert text.endswith("let me think<|end|><|start|>system<|message|>Your last message was cut "
                         "off before it ended (no <|call|> or <|return|>). Keep messages shorter "
                         "and finish them.<|end|><|start|>assistant")
    # the stream is still valid harmony
    assert message_text(get_codec().parse_conversation(obs)[-2]) == "let me think"


def test_non_stop_ending_can_end_the_episode():
    e = agent_envs.make("python-tool", cut_completion="end")
    try:
        e.reset(seed=1)
        _, reward, term, trunc, info = e.step("<|channel|>analysis<|message|>let me think")
        assert trunc and not term and info["truncated_reason"] == "length" and reward == 0.0
        with pytest.raises(EnvStateError, match=re.escape("call reset()")):
            e.step("<|channel|>final<|message|>1<|return|>")
    finally:
        e.close()


def test_binary_garbage_tokens_are_an_observation(env):
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, _ = env.reset(seed=2)
        action = np.append(rng.integers(0, 201088, size=64), CALL).astype(np.int64)
        nxt, reward, term, trunc, info = env.step(action)
        assert info["model_error"] and not term
        assert np.array_equal(nxt[: len(obs) + len(action)], np.concatenate([obs, action]))


def test_megabyte_code_cell_is_refused_not_run(env):
    code = "x = 1\n" + "#" * (1 << 20)
    obs, reward, term, trunc, info = _step_text(
        env, f"<|channel|>analysis to=python code<|message|>{code}<|call|>")
    assert not term and not trunc
    assert info["tool_outcome"]["ok"] is False and "too large" in info["tool_outcome"]["error"]
    assert "are not run" in message_text(get_codec().parse_conversation(obs)[-1])


def test_huge_output_marker_states_the_true_count(env):
    """10 MB printed: the model is told how much it does not see (issue 18), not only how much
    of the sandbox's already-cut 16 KB the env cut again."""
    env.reset(seed=1)
    obs, *_ = env.step("<|channel|>analysis to=python code<|message|>"
                       "print('x' * 10_000_000)<|call|>")
    out = message_text(get_codec().parse_conversation(obs)[-1])
    limit = env.tool_config.max_output_chars
    m = re.search(r"\[\.\.\. (\d+) characters truncated \.\.\.\]", out)
    assert m is not None and out.count("characters truncated") == 1, out[:300]
    assert int(m.group(1)) + out.count("x") == 10_000_000
    assert int(m.group(1)) == 10_000_000 - limit


def test_infinite_loop_is_killed_and_the_next_call_gets_a_fresh_session():
    e = agent_envs.make("python-tool", call_timeout_s=1.0)
    try:
        e.reset(seed=1)
        _, _, term, trunc, info = e.step(
            "<|channel|>analysis to=python code<|message|>x = 5\nwhile True: pass<|call|>")
        assert not term and not trunc
        assert info["tool_outcome"]["timed_out"] and "timed out" in info["tool_outcome"]["error"]
        obs, _, _, _, info = e.step(
            "<|channel|>analysis to=python code<|message|>print('alive'); 'x' in dir()<|call|>")
        out = message_text(get_codec().parse_conversation(obs)[-1])
        assert info["tool_outcome"]["ok"] and "alive" in out and "False" in out
    finally:
        e.close()


def test_state_persists_and_errors_show_the_traceback_tail(env):
    env.reset(seed=1)
    env.step("<|channel|>analysis to=python code<|message|>import math\nv = math.factorial(5)"
             "<|call|>")
    obs, *_, info = env.step("<|channel|>analysis to=python code<|message|>v + 1<|call|>")
    assert message_text(get_codec().parse_conversation(obs)[-1]).strip() == "121"
    obs, *_, info = env.step("<|channel|>analysis to=python code<|message|>1/0<|call|>")
    assert info["tool_outcome"]["ok"] is False
    assert "ZeroDivisionError" in info["tool_outcome"]["error"]
    assert "ZeroDivisionError" in message_text(get_codec().parse_conversation(obs)[-1])


def test_text_and_token_actions_are_equivalent(env):
    text = "<|channel|>analysis to=python code<|message|>6*7<|call|>"
    env.reset(seed=4)
    a = env.step(text)[0]
    env.reset(seed=4)
    b = env.step(get_codec().encode(text))[0]
    assert np.array_equal(a, b)


def test_caller_type_errors_raise(env):
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="found 1.5 of type float"):
        env.step([1, 1.5])
    with pytest.raises(InvalidActionError, match="got dict"):
        env.step({"tokens": [1]})
    with pytest.raises(InvalidActionError, match="1-D integer"):
        env.step(np.zeros((2, 2), dtype=np.int32))


def test_step_before_reset_raises():
    e = agent_envs.make("python-tool")
    with pytest.raises(EnvStateError, match="before reset"):
        e.step("<|channel|>final<|message|>1<|return|>")


def test_turn_budget_truncates():
    e = agent_envs.make("python-tool", max_turns=2)
    try:
        e.reset(seed=0)
        call = "<|channel|>analysis to=python code<|message|>1<|call|>"
        assert e.step(call)[3] is False
        _, reward, term, trunc, info = e.step(call)
        assert trunc and not term and info["truncated_reason"] == "turns" and reward == 0.0
        assert info["episode"]["tool_calls"] == 2
    finally:
        e.close()


def test_token_budget_truncates_and_reports_room_left():
    e = agent_envs.make("python-tool", max_tokens=400)
    try:
        obs, info = e.reset(seed=0)
        assert info["max_new_tokens"] == 400 - len(obs)
        _, _, term, trunc, info = e.step(
            "<|channel|>analysis to=python code<|message|>print('a' * 3000)<|call|>")
        assert trunc and info["truncated_reason"] == "tokens"
    finally:
        e.close()


def test_infra_fault_is_flagged_not_scored():
    sandbox = make_sandbox("local", limits=Limits(timeout_s=5))
    sandbox.close()  # a sandbox that can no longer open sessions
    e = agent_envs.make("python-tool", sandbox_instance=sandbox)
    try:
        e.reset(seed=0)
        _, reward, term, trunc, info = e.step(
            "<|channel|>analysis to=python code<|message|>1<|call|>")
        assert trunc and not term and info["truncated_reason"] == "infra"
        assert info["infra_error"] and info["tool_outcome"]["ok"] is False
    finally:
        e.close()


def test_answer_retry_starts_a_new_segment():
    e = agent_envs.make("python-tool", answer_retries=1)
    try:
        obs, _ = e.reset(seed=3)
        nxt, reward, term, trunc, info = e.step(
            "<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final"
            "<|message|>I am not sure.<|return|>")
        assert not term and not trunc and info["new_segment"] and info["segment"] == 1
        text = get_codec().decode(nxt)
        assert "I am not sure.<|end|>" in text and "<|return|>" not in text
        assert "hmm" not in text  # analysis of the finished turn is dropped
        assert "State it once more" in text
        final = f"<|channel|>final<|message|>\\boxed{{{e.task.answer}}}<|return|>"
        _, reward, term, _, info = e.step(final)
        assert term and reward == 1.0 and info["episode"]["segments"] == 2
    finally:
        e.close()


def test_end_token_stop_lets_the_turn_continue(env):
    obs, _ = env.reset(seed=0)
    nxt, _, term, trunc, info = env.step("<|channel|>analysis<|message|>thinking<|end|>")
    assert not term and not trunc and info["model_error"] is None
    assert tuple(nxt[-2:]) == get_codec().assistant_header


def test_async_twins_match_sync():
    async def go():
        e = agent_envs.make("python-tool")
        try:
            obs, _ = await e.areset(seed=9)
            oracle = Oracle()
            while True:
                obs, reward, term, trunc, info = await e.astep(oracle.act(obs, e.task))
                if term or trunc:
                    return obs, reward
        finally:
            await e.aclose()

    obs_async, reward = asyncio.run(go())
    e = agent_envs.make("python-tool")
    try:
        obs_sync, r2, *_ = run_oracle(e, seed=9)
    finally:
        e.close()
    assert reward == r2 == 1.0 and np.array_equal(obs_async, obs_sync)


def test_many_concurrent_async_episodes():
    async def one(seed):
        e = agent_envs.make("python-tool")
        try:
            obs, _ = await e.areset(seed=seed)
            oracle = Oracle()
            while True:
                obs, reward, term, trunc, info = await e.astep(oracle.act(obs, e.task))
                if term or trunc:
                    return reward, info["infra_error"]
        finally:
            await e.aclose()

    async def go():
        return await asyncio.gather(*(one(s) for s in range(24)))

    results = asyncio.run(go())
    assert all(err is None for _, err in results)
    assert sum(r for r, _ in results) >= 23


def test_unknown_ids_and_kwargs_get_suggestions():
    with pytest.raises(UnknownEnvError, match=re.escape("Did you mean 'python-tool'")):
        agent_envs.make("python-tol")
    with pytest.raises(TypeError, match=re.escape("did you mean 'call_timeout_s'")):
        agent_envs.make("python-tool", call_timeout=3)
    assert agent_envs.spec("python-tool").id == "python-tool-v0"
    assert agent_envs.spec("agent_envs/python-tool-v0").id == "python-tool-v0"
    with pytest.raises(ValueError, match="already registered"):
        agent_envs.register("python-tool-v0", "agent_envs.envs.python_tool:PythonToolEnv")
    with pytest.raises(ValueError, match="must look like 'name-vN'"):
        agent_envs.register("PythonTool", "x:y")


def test_render_ansi_transcript():
    e = agent_envs.make("python-tool", render_mode="ansi")
    try:
        run_oracle(e, seed=2)
        text = e.render()
        assert "user:" in text and "assistant [analysis] -> python:" in text
        assert "tool/python [analysis] -> assistant:" in text and "assistant [final]:" in text
    finally:
        e.close()


def test_system_message_is_the_trained_python_description_with_only_local_facts_changed():
    from agent_envs.envs.python_tool.env import python_tool_description

    trained = oh.ToolNamespaceConfig.python().description
    ours = python_tool_description(7.5)
    # Exactly three sentences differ: the timeout, where files go, and internet access.
    trained_sentences = set(re.split(r"(?<=\.) ", trained))
    our_sentences = set(re.split(r"(?<=\.) ", ours))
    assert trained_sentences - our_sentences == {
        "python will respond with the output of the execution or time out after 120.0 seconds.",
        "The drive at '/mnt/data' can be used to save and persist user files.",
        "Internet access for this session is UNKNOWN.", "Depends on the cluster."}
    assert our_sentences - trained_sentences == {
        "python will respond with the output of the execution or time out after 7.5 seconds.",
        "The current directory can be used to save and persist user files.",
        "Internet access for this session is disabled."}
    # The env's system message is harmony's rendering of the trained config with those edits.
    codec = get_codec()
    trained_system = oh.Message.from_role_and_content(
        oh.Role.SYSTEM, oh.SystemContent.new().with_tools(oh.ToolNamespaceConfig.python()))
    expected = codec.decode(codec.render_message(trained_system)).replace(trained, ours)
    with agent_envs.make("python-tool", call_timeout_s=7.5) as env:
        obs, _ = env.reset(seed=0)
    system = codec.decode(obs).split("<|start|>developer", 1)[0]
    assert system == expected


def test_a_changed_harmony_description_is_a_clear_error(monkeypatch):
    from agent_envs.tools import python as python_env

    monkeypatch.setattr(python_env, "_TRAINED_FACTS", (("no such sentence.", "x"),))
    with pytest.raises(RuntimeError, match=re.escape("no longer contains 'no such sentence.'")):
        python_env.python_tool_description(1)


def test_oracle_dispatches_on_registered_task_types():
    import dataclasses

    from agent_envs.oracle import _ORACLES, register_oracle
    from agent_envs.tasks.base import Task

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class OtherTask(Task):
        extra: str = ""

    class OtherOracle:
        def __init__(self, *, codec, wrong):
            self.wrong = wrong

        def act_text(self, obs, task):
            return f"<|channel|>final<|message|>{task.extra}{'!' if self.wrong else ''}<|return|>"

    register_oracle(OtherTask, OtherOracle)
    try:
        task = OtherTask(id="t", prompt="p", answer="a", extra="hello")
        assert Oracle().act_text([], task).endswith("hello<|return|>")
        assert Oracle(wrong=True).act_text([], task).endswith("hello!<|return|>")
        with pytest.raises(ValueError, match="needs a Task subclass"):
            register_oracle(Task, OtherOracle)
    finally:
        _ORACLES.pop(OtherTask, None)


def test_an_env_whose_extra_is_missing_names_the_extra(monkeypatch):
    import sys

    from agent_envs import MissingDependencyError, register
    from agent_envs.registry import _REGISTRY

    monkeypatch.setitem(sys.modules, "fake_env_module", None)  # import fails
    register("needs-extra-v0", "fake_env_module:Env", extra="browser")
    try:
        with pytest.raises(MissingDependencyError,
                           match=re.escape("pip install 'agent-envs[browser]'")):
            agent_envs.make("needs-extra")
    finally:
        _REGISTRY.pop("needs-extra-v0")
        gymnasium.registry.pop("agent_envs/needs-extra-v0", None)


# -- issue 18: mistakes that used to pass silently -----------------------------------------------


def test_a_misspelt_sandbox_or_too_little_memory_fails_at_make():
    # Before: both were accepted, and every episode then became an infra error.
    with pytest.raises(ValueError, match=re.escape(
            "sandbox='bubblewarp': unknown sandbox backend 'bubblewarp'; did you mean "
            "'bubblewrap'?")):
        agent_envs.make("python-tool", sandbox="bubblewarp")
    with pytest.raises(ValueError, match=re.escape(
            "memory_mb=1 is too small: a python session needs at least 256 MiB")):
        agent_envs.make("python-tool", memory_mb=1)
    agent_envs.make("python-tool", sandbox="auto", memory_mb=256).close()


def test_procedural_knobs_with_other_sources_are_errors(tmp_path):
    from agent_envs.tasks import save_tasks
    from agent_envs.tasks.base import Task

    path = tmp_path / "tasks.jsonl"
    save_tasks(path, [Task(id="t/0", prompt="1+1?", answer="2", answer_kind="int")])
    agent_envs.make("python-tool", task_source=f"jsonl:{path}").close()
    with pytest.raises(ValueError, match=re.escape(
            f"difficulty=3 applies to procedural tasks only, not to task source "
            f"'jsonl:{path}'")):
        agent_envs.make("python-tool", task_source=f"jsonl:{path}", difficulty=3)
    with pytest.raises(ValueError, match=re.escape("families=['modpow'] applies to procedural")):
        agent_envs.make("python-tool", task_source=f"jsonl:{path}", families=["modpow"])


def test_d5_training_tasks_are_solvable_within_the_limits():
    # Before: kgram d5 tasks needed up to a 98,722-byte cell (limit 65,536) and prompts over
    # the 32,768-token budget; the eval suite skipped them, the training split did not. A seeded
    # sample of each family at d5, played by the oracle through the real sandbox.
    from agent_envs.tasks import family_names

    for family in family_names():
        env = agent_envs.make("python-tool", difficulty=5, families=[family])
        try:
            obs, info = env.reset(seed=17)
            assert len(env.task.solution_code.encode()) <= env.tool_config.max_code_bytes
            oracle = Oracle()
            while True:
                obs, reward, terminated, truncated, info = env.step(oracle.act(obs, env.task))
                if terminated or truncated:
                    break
            assert (reward, info["infra_error"], info["truncated_reason"]) == (1.0, None, None), \
                (info["task_id"], info["tool_outcome"], info["truncated_reason"])
            assert len(obs) <= env.config.max_tokens
        finally:
            env.close()
