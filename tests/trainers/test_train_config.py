"""trainers.config: TOML loading, typed dotted overrides, validation messages, presets; the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

from trainers.cli import main
from trainers.config import (
    AlgoSection,
    ConfigError,
    ModelSection,
    RolloutSection,
    TrainConfig,
    config_help,
    load_config,
)
from trainers.rollout_correction import RolloutCorrectionConfig

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_toml_sections_and_types(tmp_path: Path) -> None:
    path = write(tmp_path, """
steps = 7
[model]
lora = true
lora_attention_modules = ["q_proj"]
[env]
id = "toy-digit"
kwargs = { max_turns = 2, fixed_target = 3 }
[rollout]
group_size = 4
temperature = 0.7
[algo]
name = "ppo"
lr = 3e-4
value_clip = 0.5
[correction]
preset = "seq_mis"
reject_high = 3.0
""")
    c = load_config(path)
    assert c.steps == 7 and c.model.lora is True
    assert c.model.lora_attention_modules == ("q_proj",)
    assert c.env.kwargs == {"max_turns": 2, "fixed_target": 3}
    assert (c.rollout.group_size, c.rollout.temperature) == (4, 0.7)
    assert (c.algo.name, c.algo.lr, c.algo.value_clip) == ("ppo", 3e-4, 0.5)
    assert c.correction == RolloutCorrectionConfig.preset("seq_mis", reject_high=3.0)


def test_overrides_are_typed_by_the_annotation(tmp_path: Path) -> None:
    c = load_config(None, ["steps=3", "algo.lr=1e-4", "algo.value_clip=none",
                           "model.lora=true", "rollout.allowed_tokens=env",
                           "env.kwargs.max_turns=1", "env.kwargs.fixed_target=none",
                           "correction.preset=geo_mask", "model.lora_expert_parameters=a,b",
                           "algo.value_lr=0.5"])
    assert c.steps == 3 and isinstance(c.steps, int)
    assert c.algo.lr == 1e-4 and c.algo.value_clip is None and c.algo.value_lr == 0.5
    assert c.model.lora is True and c.rollout.allowed_tokens == "env"
    assert c.env.kwargs == {"max_turns": 1, "fixed_target": None}
    assert c.correction.reject == "geometric"
    assert c.model.lora_expert_parameters == ("a", "b")


def test_override_beats_the_file_and_preset_override_drops_file_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "[algo]\nlr = 0.1\n[correction]\npreset = 'seq_mis'\nis_cap = 5.0\n")
    c = load_config(path, ["algo.lr=0.2", "correction.preset=token_tis"])
    assert c.algo.lr == 0.2
    assert c.correction == RolloutCorrectionConfig.preset("token_tis")


@pytest.mark.parametrize("overrides,message", [
    (["rollout.grup_size=4"], ("unknown config key 'rollout.grup_size'. Did you mean "
                              "'rollout.group_size'?")),
    (["algo.lr=fast"], "algo.lr='fast' is invalid: expected a number. Use e.g. 1e-5."),
    (["algo.name=dqn"], "algo.name='dqn' is invalid: must be one of ['grpo', 'ppo']"),
    (["rollout.group_size=1"], "rollout.group_size=1 is invalid: GRPO needs >= 2 episodes"),
    (["algo.minibatches=100"], ("algo.minibatches=100 is invalid: more minibatches than "
                               "episodes per step (8 tasks x 8 = 64)")),
    (["algo.microbatches=0"], "algo.microbatches=0 is invalid: must be >= 1. Use 1."),
    (["algo.minibatches=4", "algo.microbatches=20"], (
        "algo.microbatches=20 is invalid: minibatches x microbatches = 4 x 20 = 80 chunks, "
        "more than the episodes per step (8 tasks x 8 = 64): some chunks would be empty. "
        "Use algo.microbatches <= 16.")),
    (["model.attn_implementation=flash_attention_2"], "would ignore gpt-oss attention sinks"),
    (["correction.is_cap=0.5"], "RolloutCorrectionConfig.is_cap=0.5 is invalid"),
    (["correction.preset=magic"], "correction.preset='magic' is invalid: must be one of"),
    (["model.lora=maybe"], "model.lora='maybe' is invalid: expected a boolean"),
    (["algo.lr"], "override 'algo.lr' is invalid: expected KEY=VALUE"),
    (["rollout.sampler=vllm"], "model.device='cpu' is invalid: the vLLM sampler needs"),
    (["steps=0"], "train.steps=0 is invalid: must be >= 1"),
    # issue 18: a bad env kwarg in a config had no did-you-mean (it failed at the first make)
    (["env.kwargs.max_turnz=2"], ("env.kwargs: toy-digit-v0 got an unknown argument "
                                  "'max_turnz'; did you mean 'max_turns'?")),
    (["env.id=toy-digt"], "env.id: no environment 'toy-digt' is registered. Did you mean"),
])
def test_invalid_values_say_what_and_how_to_fix(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("does not exist")):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=re.escape("is not valid TOML")):
        load_config(write(tmp_path, "steps = = 3"))
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'algo.learning_rate'")):
        load_config(write(tmp_path, "[algo]\nlearning_rate = 1.0\n"))


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match=re.escape("rollout.top_p=0.0 is invalid")):
        TrainConfig(rollout=RolloutSection(top_p=0.0))
    with pytest.raises(ConfigError, match=re.escape("algo.clip_low=1.5 is invalid")):
        TrainConfig(algo=AlgoSection(clip_low=1.5))
    with pytest.raises(ConfigError, match=re.escape("model.tiny_hidden_size=30 is invalid")):
        TrainConfig(model=ModelSection(tiny_hidden_size=30))


def test_every_field_has_help_text_and_help_lists_them() -> None:
    text = config_help()
    for cls in (TrainConfig, ModelSection, RolloutSection, AlgoSection):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    assert "group_size = 8" in text and "G: episodes per task" in text
    assert "microbatches = 1  # (int) gradient accumulation" in text
    assert load_config(None, ["algo.microbatches=4"]).algo.microbatches == 4


@pytest.mark.parametrize("name", ["tiny-cpu", "tiny-cpu-ppo", "gpt-oss-20b"])
def test_presets_load(name: str) -> None:
    c = load_config(ROOT / "configs" / f"{name}.toml")
    if name == "gpt-oss-20b":
        assert c.model.lora and c.rollout.sampler == "vllm" and c.model.dtype == "bfloat16"
        assert c.env.id == "python-tool"
    else:
        assert c.env.id == "toy-digit" and c.rollout.allowed_tokens == "env"
        assert c.algo.name == ("ppo" if name.endswith("ppo") else "grpo")


def test_cli_print_config_and_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT / "configs/tiny-cpu.toml"), "algo.lr=0.5", "--print-config"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["algo"]["lr"] == 0.5 and out["env"]["id"] == "toy-digit"
    assert main([str(ROOT / "configs/tiny-cpu.toml"), "algo.lr=x"]) == 2
    assert "algo.lr='x' is invalid" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help-config"]) == 0
    assert "[correction]" in capsys.readouterr().out


def test_cuda_without_cuda_and_a_missing_model_are_config_errors(tmp_path: Path) -> None:
    # issue 18: device="cuda" without CUDA was a bare AssertionError from torch, and a bad
    # model name a huggingface OSError traceback (after a minute of retries offline).
    import torch

    from trainers.train import Trainer

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = load_config(None, [f"logging.out_dir={tmp_path}", "model.device=cuda"])
    with pytest.raises(ConfigError, match=re.escape(
            "model.device='cuda', but no CUDA device is available here "
            "(torch.cuda.is_available() is False). Use model.device='cpu'")):
        Trainer(config)
    config = load_config(None, [f"logging.out_dir={tmp_path}",
                                f"model.name={tmp_path / 'no-such-checkpoint'}"])
    with pytest.raises(ConfigError, match=re.escape(
            f"model.name: model '{tmp_path / 'no-such-checkpoint'}' is not a directory here")):
        Trainer(config)
