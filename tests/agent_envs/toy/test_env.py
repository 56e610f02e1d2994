"""toy-digit-v0, toy-pattern-v0, toy-cycle-v0: prefilled final channel, rewards, notices,
check_env."""

from __future__ import annotations

import re

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agent_envs
from agent_envs import UnknownTaskError
from agent_envs.envs.toy import (
    PREFILL_TEXT,
    CycleTaskSource,
    DigitTaskSource,
    PatternTaskSource,
    ToyCycleEnv,
    ToyDigitEnv,
    ToyPatternEnv,
    cycle_score,
    pattern_score,
    trivial_scores,
)
from agent_envs.harmony import RETURN, get_codec

CODEC = get_codec()
DIGIT = {d: CODEC.encode(str(d))[0] for d in range(10)}


def test_registered_and_passes_check_env() -> None:
    env = agent_envs.make("toy-digit")
    assert isinstance(env, ToyDigitEnv) and env.spec is not None
    check_env(env, skip_render_check=False)


def test_observation_ends_with_the_prefill_after_the_assistant_header() -> None:
    env = agent_envs.make("toy-digit")
    obs, info = env.reset(seed=3)
    prefill = CODEC.encode(PREFILL_TEXT)
    header = list(CODEC.assistant_header)
    assert obs.dtype == np.int32
    assert obs[-len(prefill):].tolist() == prefill
    assert obs[-len(prefill) - len(header):-len(prefill)].tolist() == header
    assert info["task_id"] == "toy-digit/train/7"
    assert "7" not in CODEC.decode(obs)  # the fixed target is not in the prompt


@pytest.mark.parametrize("digit,reward", [(7, 1.0), (3, 0.0)])
def test_digit_then_return_ends_the_episode_with_exact_match_reward(digit: int,
                                                                    reward: float) -> None:
    env = agent_envs.make("toy-digit")
    obs, _ = env.reset(seed=0)
    nxt, r, terminated, truncated, info = env.step([DIGIT[digit], RETURN])
    assert (r, terminated, truncated) == (reward, True, False)
    assert info["verdict"]["correct"] is (reward == 1.0)
    assert nxt[: len(obs) + 2].tolist() == obs.tolist() + [DIGIT[digit], RETURN]


def test_two_digits_is_not_an_exact_match() -> None:
    env = agent_envs.make("toy-digit")
    env.reset(seed=0)
    _, r, terminated, _, info = env.step([DIGIT[7], DIGIT[7], RETURN])
    assert terminated and r == 0.0 and info["verdict"]["extracted"] == "77"


def test_cut_completion_gets_a_notice_and_the_next_turn_is_prefilled_again() -> None:
    env = agent_envs.make("toy-digit")
    obs, _ = env.reset(seed=0)
    nxt, r, terminated, truncated, info = env.step([DIGIT[1], DIGIT[2]])
    assert not (terminated or truncated) and r == 0.0
    assert "cut" in info["model_error"]
    appended = nxt[len(obs) + 2:].tolist()
    assert len(appended) == info["env_token_count"] > 0
    assert appended[-len(env.prefill):] == list(env.prefill)
    # Answering correctly on the next turn still wins.
    _, r2, terminated2, _, _ = env.step([DIGIT[7], RETURN])
    assert terminated2 and r2 == 1.0


def test_random_tokens_are_observations_and_the_turn_budget_ends_the_episode() -> None:
    env = agent_envs.make("toy-digit", max_turns=3)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for turn in range(1, 4):
        action = rng.integers(0, 200000, size=5)
        nxt, r, terminated, truncated, info = env.step(action)
        assert nxt[: len(obs) + 5].tolist() == obs.tolist() + action.tolist()
        assert info["model_error"] is not None and r == 0.0
        obs = nxt
        if turn < 3:
            assert not (terminated or truncated)
    assert truncated and info["truncated_reason"] == "turns"


def test_copy_task_states_a_seeded_target() -> None:
    env = agent_envs.make("toy-digit", fixed_target=None)
    targets = set()
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        target = info["task_id"].rsplit("/", 1)[1]
        targets.add(target)
        assert f"digit {target}" in CODEC.decode(obs)
        assert env.reset(seed=seed)[1]["task_id"] == info["task_id"]  # deterministic
    assert len(targets) >= 5
    obs, info = env.reset(seed=0)
    target = int(info["task_id"][-1])
    assert env.step([DIGIT[target], RETURN])[1] == 1.0


def test_allowed_token_ids_are_the_digits_and_return() -> None:
    env = agent_envs.make("toy-digit")
    ids = env.allowed_token_ids()
    assert ids[-1] == RETURN and len(ids) == 11
    assert [CODEC.decode([t]) for t in ids[:10]] == [str(d) for d in range(10)]


def test_task_source_validation_and_lookup() -> None:
    with pytest.raises(ValueError, match=re.escape("fixed_target=12 is invalid")):
        DigitTaskSource(12)
    src = DigitTaskSource(None)
    assert src.get("toy-digit/test/4").answer == "4"
    with pytest.raises(UnknownTaskError, match="toy-digit/train/7"):
        DigitTaskSource(3).get("toy-digit/train/7")


# --------------------------------------------------------------------------- toy-pattern


def digits(text: str) -> list[int]:
    return [DIGIT[int(c)] for c in text]


def test_pattern_env_is_registered_and_passes_check_env() -> None:
    env = agent_envs.make("toy-pattern")
    assert isinstance(env, ToyPatternEnv) and env.spec is not None
    check_env(env, skip_render_check=False)


def test_pattern_prompt_hides_the_pattern_unless_asked() -> None:
    env = agent_envs.make("toy-pattern", pattern="37", length=12)
    obs, info = env.reset(seed=5)
    assert info["task_id"] == "toy-pattern/train/37x12"
    text = CODEC.decode(obs)
    assert "Reply with 12 digits" in text and "37" not in text
    assert obs[-len(env.prefill):].tolist() == CODEC.encode(PREFILL_TEXT)
    shown = agent_envs.make("toy-pattern", pattern="37", length=12, show_pattern=True)
    assert "digits 37 repeated" in CODEC.decode(shown.reset(seed=5)[0])


@pytest.mark.parametrize(("answer", "reward", "correct"), [
    ("01010101", 1.0, True),     # exact
    ("01010111", 7 / 8, False),  # one position wrong
    ("0101", 0.5, False),        # short: the missing positions count as wrong
    ("0101010199", 1.0, False),  # characters past the length are ignored by the score
    ("", 0.0, False),
])
def test_pattern_reward_is_the_fraction_of_positions_right(answer: str, reward: float,
                                                           correct: bool) -> None:
    env = agent_envs.make("toy-pattern", length=8, max_turns=1)
    obs, _ = env.reset(seed=0)
    nxt, r, terminated, truncated, info = env.step(digits(answer) + [RETURN])
    assert (r, terminated, truncated) == (pytest.approx(reward), True, False)
    assert info["verdict"]["correct"] is correct
    assert nxt[: len(obs) + len(answer) + 1].tolist() == obs.tolist() + digits(answer) + [RETURN]


@pytest.mark.parametrize("cut", ["notice", "end"])
def test_a_cut_answer_that_ends_the_episode_is_scored_on_what_it_wrote(cut: str) -> None:
    env = agent_envs.make("toy-pattern", length=8, max_turns=1, cut_completion=cut)
    env.reset(seed=0)
    _, r, terminated, truncated, info = env.step(digits("010101010"))  # no <|return|>
    assert not terminated and truncated
    assert info["truncated_reason"] == ("turns" if cut == "notice" else "length")
    assert r == 1.0
    env.reset(seed=0)
    assert env.step(digits("0111"))[1] == pytest.approx(3 / 8)  # 0, 1 and 3 right


def test_a_cut_turn_with_turns_left_goes_on_and_the_final_answer_counts() -> None:
    env = agent_envs.make("toy-pattern", length=4, max_turns=2)
    env.reset(seed=0)
    nxt, r, terminated, truncated, info = env.step(digits("1111"))
    assert (r, terminated, truncated) == (0.0, False, False) and "cut" in info["model_error"]
    assert nxt[-len(env.prefill):].tolist() == list(env.prefill)
    _, r2, terminated2, _, _ = env.step(digits("0101") + [RETURN])
    assert terminated2 and r2 == 1.0


def test_pattern_allowed_tokens_and_validation() -> None:
    env = agent_envs.make("toy-pattern")
    ids = env.allowed_token_ids()
    assert ids[-1] == RETURN and [CODEC.decode([t]) for t in ids[:10]] == list("0123456789")
    with pytest.raises(ValueError, match=re.escape("pattern='0x' is invalid")):
        PatternTaskSource("0x")
    with pytest.raises(ValueError, match=re.escape("length=0 is invalid")):
        PatternTaskSource("01", 0)
    src = PatternTaskSource("7", 5)
    assert src.target == "77777" and src.get("toy-pattern/test/7x5").answer == "77777"
    with pytest.raises(UnknownTaskError, match=re.escape("toy-pattern/train/7x5")):
        src.get("toy-pattern/train/01x5")
    assert pattern_score("0110", "0101") == 0.5


# --------------------------------------------------------------------------- toy-cycle


def cycle_env(length: int = 8, **kwargs: object) -> tuple[ToyCycleEnv, np.ndarray, str]:
    """A toy-cycle env reset on seed 0, its observation and its start digit."""
    env = agent_envs.make("toy-cycle", length=length, max_turns=1, **kwargs)
    obs, info = env.reset(seed=0)
    return env, obs, info["task_id"].rsplit("/", 1)[1]


def count_on(start: str, n: int, pattern: str = "0123456789") -> str:
    i = pattern.index(start)
    return "".join(pattern[(i + 1 + j) % len(pattern)] for j in range(n))


def test_cycle_env_is_registered_and_passes_check_env() -> None:
    env = agent_envs.make("toy-cycle")
    assert isinstance(env, ToyCycleEnv) and env.spec is not None
    check_env(env, skip_render_check=False)


def test_cycle_observation_ends_with_the_start_digit_and_hides_the_pattern() -> None:
    env = agent_envs.make("toy-cycle", pattern="3719", length=12)
    starts = set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        start = info["task_id"].rsplit("/", 1)[1]
        starts.add(start)
        assert obs[-len(env.prefill) - 1:].tolist() == list(env.prefill) + [DIGIT[int(start)]]
        text = CODEC.decode(obs)
        assert f"Continue from {start}:" in text and "3719" not in text
        assert "<|start|>system" not in text  # a short prompt: the user message only
        assert "3719" not in info["task_id"]  # the id names the start, never the pattern
        assert env.reset(seed=seed)[1]["task_id"] == info["task_id"]  # deterministic
    assert starts == set("3719")  # every start digit is drawn


# Start digit of seed 0 (asserted in the test): 0, so the answer is 12345678.
@pytest.mark.parametrize(("answer", "reward", "correct"), [
    ("12345678", 1.0, True),      # exact
    ("12395678", 6 / 8, False),   # one digit wrong: it and the digit after it
    ("23456789", 7 / 8, False),   # the right cycle from the wrong first digit
    ("11111111", 1 / 8, False),   # a constant: only the first 1 follows the 0
    ("12121212", 2 / 8, False),   # a 2-loop: 1 and 2 follow 0 and 1, then 1 repeats
    ("12341234", 4 / 8, False),   # a 4-loop: right until the loop closes
    ("1234", 4 / 8, False),       # short: the missing positions count as wrong
    ("1234567890", 1.0, False),   # digits past the length are ignored by the score
    ("", 0.0, False),
])
def test_cycle_reward_counts_digits_that_follow_the_one_before(answer: str, reward: float,
                                                                correct: bool) -> None:
    env, obs, start = cycle_env()
    assert start == "0"
    nxt, r, terminated, truncated, info = env.step(digits(answer) + [RETURN])
    assert (r, terminated, truncated) == (pytest.approx(reward), True, False)
    assert info["verdict"]["correct"] is correct
    assert info["verdict"]["extracted"] == (answer or None)  # the env's start digit is not in it
    assert nxt[: len(obs) + len(answer) + 1].tolist() == obs.tolist() + digits(answer) + [RETURN]


def test_cycle_cut_answer_is_scored_and_a_later_turn_is_prefilled_with_the_start_again() -> None:
    env, _, start = cycle_env(cut_completion="end")
    _, r, terminated, truncated, info = env.step(digits(count_on(start, 9)))  # no <|return|>
    assert not terminated and truncated and info["truncated_reason"] == "length" and r == 1.0
    env = agent_envs.make("toy-cycle", length=4, max_turns=2)
    _, info = env.reset(seed=1)
    start = info["task_id"][-1]
    nxt, r, terminated, truncated, info = env.step(digits("1111"))
    assert (r, terminated, truncated) == (0.0, False, False) and "cut" in info["model_error"]
    assert nxt[-len(env.prefill) - 1:].tolist() == list(env.prefill) + [DIGIT[int(start)]]
    _, r2, terminated2, _, _ = env.step(digits(count_on(start, 4)) + [RETURN])
    assert terminated2 and r2 == 1.0


def test_cycle_score_and_the_trivial_policies() -> None:
    assert cycle_score("4567", "3", "0123456789", 4) == 1.0
    assert cycle_score("20", "1", "012", 2) == 1.0  # 2 follows 1, 0 follows 2
    assert cycle_score("01", "2", "012", 2) == 1.0  # wraps around
    assert cycle_score("9", "8", "0123", 1) == 0.0  # digits outside the pattern never count
    # With K=3 a loop of K-1=2 digits repeats within the window and earns nothing after it.
    assert cycle_score("1212", "0", "012", 4) == 0.5
    scores = trivial_scores("0123456789", 64, samples=300)
    assert scores["best_constant"] == pytest.approx(1 / 640)  # first position, 1 start in 10
    # A loop of p < K digits earns only its first run: "4567" from start 3 gets 4 positions,
    # from the other starts 2-3 (the start digit or the loop's own repeat is in the window).
    assert scores["best_short_loop"] == pytest.approx(28 / 640)
    assert 0.02 < scores["uniform"] < 0.08
    assert scores["trivial"] == max(scores["best_constant"], scores["best_short_loop"],
                                    scores["uniform"])
    with pytest.raises(ValueError, match=re.escape("length=0 is invalid")):
        cycle_score("1", "0", "01", 0)


def test_cycle_task_source_validation_and_lookup() -> None:
    for bad in ("0", "001", "0x1", ""):
        with pytest.raises(ValueError, match=re.escape(f"pattern={bad!r} is invalid")):
            CycleTaskSource(bad)
    with pytest.raises(ValueError, match=re.escape("length=5000 is invalid")):
        CycleTaskSource("01", 5000)
    src = CycleTaskSource("2468", 6)
    task = src.get("toy-cycle/test/6/8")
    assert task.answer == "246824" and task.meta["start"] == "8" and task.split == "test"
    assert src.sample(0).id == src.get(src.sample(0).id).id
    for bad_id in ("toy-cycle/train/6/1", "toy-cycle/train/7/2", "toy-pattern/train/6/2"):
        with pytest.raises(UnknownTaskError, match=re.escape("toy-cycle/train/6/2")):
            src.get(bad_id)
