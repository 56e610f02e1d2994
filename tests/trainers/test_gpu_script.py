"""``benchmarks/gpt_oss_20b_gpu.py``: gpt-oss-20b's real config, and the CPU dry run.

The GPU run needs an H100/H200 (none here); ``--dry-run`` runs the same code (the
20b preset through ``build_model`` and ``Trainer.update``, the attention comparison, the
sampler/trainer log-prob gap) with a tiny model on CPU, and these tests check that its
figures are sane and that each section really ran.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpt_oss_20b_gpu.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpt_oss_20b_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's annotations
    spec.loader.exec_module(module)
    return module


def test_the_20b_config_is_the_published_one() -> None:
    from transformers import GptOssForCausalLM

    from trainers.models import gpt_oss_20b_config

    c = gpt_oss_20b_config()
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (24, 2880, 2880)
    assert (c.num_local_experts, c.num_experts_per_tok) == (32, 4)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (64, 8, 64)
    assert c.sliding_window == 128 and c.vocab_size == 201088
    assert c.layer_types[:4] == ["sliding_attention", "full_attention"] * 2
    assert c.layer_types.count("full_attention") == 12
    assert c.swiglu_limit == 7.0 and c.rms_norm_eps == 1e-5 and not c.tie_word_embeddings
    rope = getattr(c, "rope_parameters", None) or {**c.rope_scaling,
                                                     "rope_theta": c.rope_theta}
    assert rope["rope_type"] == "yarn" and rope["factor"] == 32.0
    assert rope["rope_theta"] == 150000.0 and rope["original_max_position_embeddings"] == 4096
    assert (rope["beta_fast"], rope["beta_slow"]) == (32.0, 1.0)
    with torch.device("meta"):
        model = GptOssForCausalLM(c)
    # openai/gpt-oss-20b: 20.9B parameters (the model card's figure).
    assert 20.8e9 < sum(p.numel() for p in model.parameters()) < 21.0e9
    sinks = model.model.layers[0].self_attn.sinks
    assert tuple(sinks.shape) == (64,)
    # A slice keeps the real widths and the alternating layer pattern.
    two = gpt_oss_20b_config(num_hidden_layers=2)
    assert two.layer_types == ["sliding_attention", "full_attention"]
    assert two.hidden_size == 2880


def test_dry_run_runs_every_section_with_sane_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script()
    out = tmp_path / "dry.json"
    assert script.main(["--dry-run", "--lengths", "48", "96", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| L | step | s | tokens/s |" in printed and "attention vs eager" in printed
    report = json.loads(out.read_text())
    meta = report["meta"]
    assert meta["gpt_oss_20b_params"] == 20_914_757_184
    assert meta["plan"]["dry_run"] is True and meta["gpu"] is None
    assert meta["preset"]["gradient_checkpointing"] is True
    assert meta["preset"]["lora_r"] == 32 and meta["preset"]["microbatches"] == 2
    assert meta["preset"]["lora_expert_parameters"] == ["mlp.experts.gate_up_proj",
                                                        "mlp.experts.down_proj"]
    assert report["errors"] == [] and report["skipped"] == []
    # train: one update per length through Trainer.update, LoRA only.
    rows = report["train"]
    assert [r["length"] for r in rows] == [48, 96]
    for r in rows:
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0, r
        assert r["tokens_per_s"] > 0 and r["tokens"] == 2 * r["length"]
        assert r["microbatches"] == 2.0
        assert r["ratio_max_abs_dev"] == 0.0
        # Unpadded samples, one per microbatch: the training forward reproduces the
        # no-grad scoring bit for bit on CPU.
        assert r["is_weight_max_abs_dev"] == 0.0 and r["logp_abs_diff_max"] == 0.0
    assert 0 < meta["trainable_params"] < meta["model_params"] // 10
    # LoRA B starts at 0, so A has no gradient on the first step: B tensors must move.
    assert meta["lora_tensors"] > 0
    assert meta["lora_tensors"] // 2 <= meta["lora_tensors_changed"] <= meta["lora_tensors"]
    # attention: fused_sinks against eager, forward and gradients, float32.
    attn = {(r["length"], r["impl"]): r for r in report["attention"]}
    assert set(attn) == {(48, "eager"), (48, "fused_sinks"), (96, "eager"), (96, "fused_sinks")}
    for length in (48, 96):
        r = attn[(length, "fused_sinks")]
        assert r["fwd_rel"] < 1e-5 and r["fwd_max_abs"] < 1e-4
        assert 0 <= r["grad_rel_max"] < 1e-4
        assert r["speedup_vs_eager"] > 0
    # logprob gap: the KV-cached sampler vs the trainer's forward, float32 CPU.
    gap = report["logprob_gap"]
    assert gap["new_tokens"] == 8 and gap["prompt_tokens"] == 32
    assert 0.0 <= gap["sampler_vs_trainer_max_abs"] < 1e-3
    assert gap["sampler_vs_trainer_mean_abs"] <= gap["sampler_vs_trainer_max_abs"]
    assert gap["nograd_vs_trainer_max_abs"] == 0.0
    assert gap["sampler_mean_logprob"] < 0


def test_without_a_gpu_the_real_run_says_so_and_how_to_dry_run() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    script = load_script()
    with pytest.raises(SystemExit, match=re.escape("no CUDA device: this benchmark needs a GPU")):
        script.main([])


def test_bf16_attention_comparison_has_a_float32_reference() -> None:
    # The GPU run compares bf16 kernels with bf16 eager AND with a float32 eager copy;
    # here the same code on the tiny model in bf16 on CPU.
    script = load_script()
    plan = script.Plan(dry_run=True, device="cpu", dtype="bfloat16", attn="fused_sinks",
                       lengths=[48, 96], steps=1, completion_tokens=16,
                       compare_impls=["fused_sinks"], gap_prompt=8, gap_new_tokens=2,
                       budget_s=600.0, fp32_ref_max_len=64)
    report = script.Report()
    script.run_attention(plan, report, script.Clock(600.0))
    assert report.errors == []
    rows = {(r["length"], r["impl"]): r for r in report.attention}
    eager, fused = rows[(48, "eager")], rows[(48, "fused_sinks")]
    # bf16 is ~3 significant digits: both are off the float32 truth by ~1e-2, and the
    # sink-aware kernel is no worse than bf16 eager.
    for r in (eager, fused):
        assert 0 < r["fwd_rel_fp32"] < 0.05 and 0 < r["grad_rel_fp32"] < 0.1
    assert fused["fwd_rel_fp32"] < 2 * eager["fwd_rel_fp32"]
    assert 0 < fused["fwd_rel"] < 0.05
    # Past fp32_ref_max_len there is no float32 reference.
    assert "fwd_rel_fp32" not in rows[(96, "fused_sinks")]
