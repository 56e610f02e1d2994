from __future__ import annotations

import re

import openai_harmony as oh
import pytest

from agent_envs.errors import VocabularyError
from agent_envs.harmony import (
    CALL, END, RETURN, STOP_TOKEN_IDS, FunctionTool, SystemConfig, drop_analysis, get_codec,
    message_text,
)
from agent_envs.harmony import vocab as vocab_mod


@pytest.fixture(scope="module")
def codec():
    return get_codec()


def test_stop_tokens_match_the_library(codec):
    assert set(STOP_TOKEN_IDS) == set(codec.encoding.stop_tokens_for_assistant_actions())
    assert codec.encode("<|return|><|call|><|end|>") == [RETURN, CALL, END]


def test_missing_vocab_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    with pytest.raises(VocabularyError, match=re.escape("TIKTOKEN_ENCODINGS_BASE=")) as e:
        vocab_mod.resolve_vocab_file()
    assert "o200k_base.tiktoken" in str(e.value) and str(tmp_path) in str(e.value)


def test_corrupt_vocab_is_reported(monkeypatch, tmp_path):
    (tmp_path / "o200k_base.tiktoken").write_text("not a vocabulary")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    with pytest.raises(VocabularyError, match="corrupt or a different vocabulary"):
        vocab_mod.resolve_vocab_file()


def test_load_encoding_wraps_harmony_errors(monkeypatch, tmp_path):
    vocab_mod.load_encoding.cache_clear()
    try:
        monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path / "nope"))
        with pytest.raises(VocabularyError, match="TIKTOKEN_ENCODINGS_BASE"):
            vocab_mod.load_encoding()
    finally:
        vocab_mod.load_encoding.cache_clear()


def test_system_message_carries_config(codec):
    msg = codec.system_message(SystemConfig(reasoning_effort="high", conversation_date="2026-01-02",
                                            knowledge_cutoff="2024-06", python_tool=True,
                                            python_description="Runs python. Times out after 7 s."))
    text = codec.decode(codec.render_message(msg))
    assert "Reasoning: high" in text
    assert "Current date: 2026-01-02" in text and "Knowledge cutoff: 2024-06" in text
    assert "## python" in text and "Times out after 7 s." in text
    no_date = codec.decode(codec.render_message(codec.system_message(SystemConfig())))
    assert "Current date" not in no_date and "Reasoning: medium" in no_date
    with pytest.raises(ValueError, match="reasoning_effort must be one of"):
        SystemConfig(reasoning_effort="extreme")  # type: ignore[arg-type]


def test_developer_message_function_tools_from_json_schema(codec):
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    msg = codec.developer_message("Be terse.", [tool, FunctionTool(name="noop")])
    text = codec.decode(codec.render_message(msg))
    assert "# Instructions\n\nBe terse." in text
    assert "namespace functions" in text and "type get_weather" in text and "city: string" in text
    assert "type noop" in text
    with pytest.raises(ValueError, match="has no 'name'"):
        FunctionTool.from_openai({"description": "x"})


def test_prompt_ends_in_assistant_header_and_round_trips(codec):
    msgs = [codec.system_message(), codec.developer_message("Hi"), codec.user_message("2+2?")]
    toks = codec.render_prompt(msgs)
    assert tuple(toks[-2:]) == codec.assistant_header
    back = codec.parse_conversation(toks)
    assert [m.author.role for m in back] == [oh.Role.SYSTEM, oh.Role.DEVELOPER, oh.Role.USER]
    assert message_text(back[-1]) == "2+2?"


@pytest.mark.parametrize("text", [
    "<|channel|>analysis to=python code<|message|>1+1<|call|>",
    " to=python code<|channel|>analysis<|message|>1+1<|call|>",
])
def test_recipient_before_or_after_channel(codec, text):
    p = codec.parse_completion(codec.encode(text))
    assert p.error is None and p.stop == "call"
    assert p.last.recipient == "python" and p.last.channel == "analysis"
    assert message_text(p.last) == "1+1"


def test_missing_stop_token_is_truncated_not_an_error(codec):
    p = codec.parse_completion(codec.encode("<|channel|>analysis<|message|>thinking about"))
    assert p.truncated and p.stop is None and p.error is None
    assert message_text(p.last) == "thinking about"


@pytest.mark.parametrize("ids_or_text, fragment", [
    ([], "empty completion"),
    ("no header at all<|return|>", "malformed harmony"),
    ("<|channel|>final<|message|>4<|return|>trailing", "malformed harmony"),
    ([300_000, RETURN], "outside the vocabulary"),
    ([-1], "outside the vocabulary"),
    ("<|channel|>final<|message|>4<|end|><|start|>user<|message|>hi<|end|>", "user message"),
])
def test_unparseable_completions_become_errors(codec, ids_or_text, fragment):
    ids = codec.encode(ids_or_text) if isinstance(ids_or_text, str) else ids_or_text
    p = codec.parse_completion(ids)
    assert p.error is not None and fragment in p.error


def test_partial_messages_survive_a_later_fault(codec):
    ids = codec.encode("<|channel|>analysis<|message|>ok<|end|><|start|>assistant garbage<|call|>")
    p = codec.parse_completion(ids)
    assert p.error is not None
    assert [message_text(m) for m in p.messages] == ["ok"]


def test_binary_garbage_never_raises(codec):
    import random
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(0, 201088) for _ in range(rng.randrange(1, 40))]
        p = codec.parse_completion(ids)
        assert p.error is not None or p.messages
        assert isinstance(codec.decode(ids), str)


def test_tool_result_tokens_are_a_tool_message_then_assistant_header(codec):
    toks = codec.tool_result_tokens("python", "42\n", channel="analysis")
    assert tuple(toks[-2:]) == codec.assistant_header
    (msg,) = codec.parse_conversation(toks)
    assert msg.author.role == oh.Role.TOOL and msg.author.name == "python"
    assert msg.recipient == "assistant" and msg.channel == "analysis"
    assert message_text(msg) == "42\n"


def _conv(codec):
    A = oh.Role.ASSISTANT
    return [
        codec.user_message("q1"),
        oh.Message.from_role_and_content(A, "think1").with_channel("analysis"),
        oh.Message.from_role_and_content(A, "1+1").with_channel("analysis").with_recipient(
            "python"),
        codec.tool_message("python", "2"),
        oh.Message.from_role_and_content(A, "f1").with_channel("final"),
        codec.user_message("q2"),
        oh.Message.from_role_and_content(A, "think2").with_channel("analysis"),
        oh.Message.from_role_and_content(A, "f2").with_channel("final"),
        codec.user_message("q3"),
        oh.Message.from_role_and_content(A, "think3").with_channel("analysis"),
        oh.Message.from_role_and_content(A, '{"a":1}').with_channel("commentary").with_recipient(
            "functions.f"),
    ]


def test_drop_policy_drops_analysis_of_every_finished_turn(codec):
    kept = [message_text(m) for m in drop_analysis(_conv(codec))]
    assert kept == ["q1", "f1", "q2", "f2", "q3", "think3", '{"a":1}']
    assert len(drop_analysis(_conv(codec), "keep_all")) == len(_conv(codec))
    with pytest.raises(ValueError, match="unknown analysis policy"):
        drop_analysis(_conv(codec), "drop_some")  # type: ignore[arg-type]


def test_library_auto_drop_has_the_gap_our_policy_closes(codec):
    # openai-harmony drops only the analysis before the first final: think2 survives there.
    lib = codec.decode(codec.encoding.render_conversation_for_completion(
        oh.Conversation.from_messages(_conv(codec)), oh.Role.ASSISTANT))
    ours = codec.decode(codec.render_prompt(_conv(codec)))
    assert "think2" in lib
    assert "think2" not in ours and "think1" not in ours and "think3" in ours


def test_finished_final_renders_with_end_in_history(codec):
    toks = codec.render_prompt(_conv(codec)[:5] + [codec.user_message("next")])
    text = codec.decode(toks)
    assert "<|channel|>final<|message|>f1<|end|>" in text and "<|return|>" not in text


def test_encode_survives_inputs_that_overflow_the_tokenizer(codec):
    text = "<|channel|>analysis<|message|>" + "#" * (1 << 20) + "<|call|>"
    ids = codec.encode(text)
    assert ids[:3] == codec.encode("<|channel|>analysis<|message|>") and ids[-1] == CALL
    assert codec.decode(ids) == text


# -- the vocabulary without TIKTOKEN_ENCODINGS_BASE (issue 18: the quick start in a fresh shell) --


def test_vocab_beside_the_checkout_is_found_when_the_variable_is_unset(monkeypatch, tmp_path):
    import shutil

    real = vocab_mod.resolve_vocab_file()
    assert real is not None
    there = tmp_path / "shared" / "vocab"
    there.mkdir(parents=True)
    shutil.copy(real, there / "o200k_base.tiktoken")
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setattr(vocab_mod, "default_vocab_dirs", lambda: [tmp_path / "nope", there])
    assert vocab_mod.resolve_vocab_file() == there / "o200k_base.tiktoken"
    import os

    assert os.environ["TIKTOKEN_ENCODINGS_BASE"] == str(there)  # harmony (and children) read it


def test_no_vocab_anywhere_is_one_error_naming_the_variable(monkeypatch, tmp_path):
    def offline(name):  # what openai-harmony raises when it cannot download the file
        raise oh.HarmonyError("error downloading or loading vocab file")

    vocab_mod.load_encoding.cache_clear()
    try:
        monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
        monkeypatch.setattr(vocab_mod, "default_vocab_dirs", lambda: [tmp_path])
        monkeypatch.setattr(vocab_mod.oh, "load_harmony_encoding", offline)
        with pytest.raises(VocabularyError, match=re.escape(
                f"(TIKTOKEN_ENCODINGS_BASE is not set and no o200k_base.tiktoken is in "
                f"{tmp_path}; harmony said: error downloading or loading vocab file). Set "
                f"TIKTOKEN_ENCODINGS_BASE to a directory that holds o200k_base.tiktoken")):
            vocab_mod.load_encoding()
    finally:
        vocab_mod.load_encoding.cache_clear()


def _readme_quick_start() -> str:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    found = [b for b in blocks if "agent_envs.make(" in b]
    assert found, "README.md has no ```python block that calls agent_envs.make()"
    return found[0]


def test_readme_quick_start_runs_as_written_in_a_fresh_shell(tmp_path):
    # Before: only the CLI found the vocabulary by itself; the snippet failed without
    # TIKTOKEN_ENCODINGS_BASE. Now `import agent_envs` finds it as the CLI does.
    import os
    import subprocess
    import sys

    if not any((d / "o200k_base.tiktoken").is_file() for d in vocab_mod.default_vocab_dirs()):
        pytest.skip("no vocabulary beside this checkout (../shared/vocab)")
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_ENCODINGS_BASE"}
    proc = subprocess.run([sys.executable, "-c", _readme_quick_start()], cwd=tmp_path, env=env,
                          check=False,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
