"""Very long runs are tokenized without openai-harmony's quadratic slow path or its Rust panic
(issue 18: 1 MB actions printed ``tiktoken.rs ... StackOverflow`` to stderr), while every text
the tokenizer handles in reasonable time is still encoded in one pass, token for token."""

from __future__ import annotations

import random
import time

import openai_harmony as oh
import pytest

from agent_envs.harmony import get_codec
from agent_envs.harmony.longtext import RUN_BUDGET, encode_ordinary, has_long_run

MEGABYTE = 1_000_000


@pytest.fixture(scope="module")
def codec():
    return get_codec()


@pytest.mark.parametrize("char", ["x", "#", " "])
def test_a_megabyte_run_encodes_fast_and_round_trips_without_a_panic(codec, capfd, char):
    text = f"<|channel|>final<|message|>{char * MEGABYTE}<|return|>"
    t0 = time.perf_counter()
    ids = codec.encode(text)
    assert time.perf_counter() - t0 < 10.0  # one pass: minutes, then a stack overflow
    assert codec.decode(ids) == text
    assert ids[-1] == 200002 and 200005 in ids[:3]  # special tokens stay special
    assert "panicked" not in capfd.readouterr().err


def test_text_the_tokenizer_handles_stays_one_pass(codec):
    rng = random.Random(0)
    kgram_d5 = "".join(rng.choices("abcde", k=30_000))  # the longest run a prompt holds
    texts = [
        "plain words, numbers 1234567 and punctuation!? " * 200,
        "a" * 1023 + " " + "b" * 1023,
        "Consider every substring of length 3 of the string below.\n" + kgram_d5 + "\nGive it.",
        " " * 5000 + "\n" * 3000,
    ]
    for text in texts:
        assert not has_long_run(text)
        assert encode_ordinary(codec.encoding, text) == \
            list(codec.encoding.encode(text, disallowed_special=()))
    assert has_long_run("y" * (int(RUN_BUDGET**0.5) + 1))


def test_render_prompt_splices_a_huge_message_in_and_leaves_others_exact(codec, capfd):
    def conversation(text: str) -> list[oh.Message]:
        return [codec.user_message("hi"),
                oh.Message.from_role_and_content(oh.Role.ASSISTANT, text).with_channel("final"),
                codec.user_message("again")]

    short = conversation("short answer")
    expected = list(codec.encoding.render_conversation_for_completion(
        oh.Conversation.from_messages(short), oh.Role.ASSISTANT,
        oh.RenderConversationConfig(auto_drop_analysis=False)))
    assert codec.render_prompt(short) == expected
    huge = "q" * MEGABYTE
    tokens = codec.render_prompt(conversation(huge))
    assert codec.decode(tokens) == codec.decode(expected).replace("short answer", huge)
    assert "panicked" not in capfd.readouterr().err
