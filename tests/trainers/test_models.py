"""gpt-oss handling on a tiny random model: sinks honoured, fast path == eager, chunked log-probs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainers.models import (
    GPT_OSS_VOCAB_SIZE,
    GptOssLoadConfig,
    LoraConfigError,
    LoraSettings,
    ModelLoadError,
    SinkUnsupportedError,
    apply_lora,
    build_tiny_gpt_oss,
    check_attn_implementation,
    chunked_logprobs,
    load_gpt_oss,
)

F32 = "float32"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-gpt-oss")
    build_tiny_gpt_oss(seed=0).save_pretrained(path)
    return path


def batch(seed: int = 0, b: int = 2, t: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, GPT_OSS_VOCAB_SIZE, (b, t), generator=gen)
    attn = torch.ones(b, t, dtype=torch.long)
    attn[1, t - 3:] = 0  # right padding on the second row
    return ids, attn


def test_tiny_config_round_trips_through_from_pretrained(tiny_dir: Path) -> None:
    model = load_gpt_oss(tiny_dir, GptOssLoadConfig(dtype=F32))
    ref = build_tiny_gpt_oss(seed=0)
    cfg = model.config
    assert cfg.model_type == "gpt_oss" and cfg.vocab_size == GPT_OSS_VOCAB_SIZE
    assert cfg.layer_types == ["sliding_attention", "full_attention"]
    assert (cfg.num_local_experts, cfg.num_experts_per_tok) == (4, 2)
    assert model.training
    loaded = dict(model.named_parameters())
    for name, param in ref.named_parameters():
        assert torch.equal(loaded[name], param), name
    assert model.model.layers[0].self_attn.sinks.abs().max() > 0.1  # sinks that matter


@pytest.mark.parametrize("name", ["sdpa", "flash_attention_2", "flash_attention_3", "paged|sdpa"])
def test_sink_ignoring_attention_is_refused(tiny_dir: Path, name: str) -> None:
    with pytest.raises(SinkUnsupportedError, match=re.escape(
            f"attn_implementation={name!r} would ignore gpt-oss attention sinks")):
        load_gpt_oss(tiny_dir, GptOssLoadConfig(attn_implementation=name, dtype=F32))


def test_device_bound_implementations_are_refused_on_cpu() -> None:
    with pytest.raises(SinkUnsupportedError, match=re.escape(
            "attn_implementation='flex_attention' honours sinks only on CUDA (device is "
            "'cpu'")):
        check_attn_implementation("flex_attention", device="cpu")
    assert check_attn_implementation("flex_attention", device="cuda") == "flex_attention"
    assert check_attn_implementation("fused_sinks") == "fused_sinks"


def test_fused_sinks_equals_eager_in_forward_and_gradient(tiny_dir: Path) -> None:
    ids, attn = batch()  # 12 tokens > sliding window 4: the sliding layer's mask matters
    grads, logits = {}, {}
    for impl in ("eager", "fused_sinks"):
        model = load_gpt_oss(tiny_dir, GptOssLoadConfig(attn_implementation=impl, dtype=F32))
        assert model.config._attn_implementation == impl
        out = model(input_ids=ids, attention_mask=attn).logits
        valid = attn.bool()
        logits[impl] = out[valid].detach()
        (out[valid].float().logsumexp(-1).sum() + out[valid][:, :50].sum()).backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters()
                       if p.grad is not None}
    torch.testing.assert_close(logits["fused_sinks"], logits["eager"], rtol=1e-5, atol=1e-5)
    assert grads["eager"].keys() == grads["fused_sinks"].keys()
    assert any("sinks" in n for n in grads["eager"])
    for name, g in grads["eager"].items():
        torch.testing.assert_close(grads["fused_sinks"][name], g, rtol=1e-4, atol=1e-5,
                                   msg=name)


@pytest.mark.parametrize("train_sinks", [True, False])
def test_fused_sinks_gives_the_same_bits_with_and_without_grad(tiny_dir: Path,
                                                                train_sinks: bool) -> None:
    """No-grad scoring and the training forward run one SDPA kernel (bitwise equal).

    With trainable sinks the mask requires grad, which on CPU would send SDPA to its math
    kernel in training but to a fused one under no_grad; ``sdpa_with_sinks`` pins it.
    """
    ids, attn = batch(seed=3)
    ids, attn = ids[:1], attn[:1]  # one unpadded row
    model = load_gpt_oss(tiny_dir, GptOssLoadConfig(attn_implementation="fused_sinks",
                                                    dtype=F32))
    for layer in model.model.layers:
        layer.self_attn.sinks.requires_grad_(train_sinks)
    with torch.no_grad():
        scored = chunked_logprobs(model, ids, attn).logprobs
    trained = chunked_logprobs(model, ids, attn).logprobs
    assert trained.requires_grad
    assert torch.equal(scored, trained.detach())


def test_ignoring_sinks_changes_the_model(tiny_dir: Path) -> None:
    """Why the refusal exists: the same weights without sinks give other log-probs."""
    ids, attn = batch()
    model = load_gpt_oss(tiny_dir, GptOssLoadConfig(dtype=F32)).eval()
    with torch.no_grad():
        with_sinks = chunked_logprobs(model, ids, attn).logprobs
        for layer in model.model.layers:
            layer.self_attn.sinks.fill_(-1e4)  # exp(-1e4) = 0: as if there were no sink
        without = chunked_logprobs(model, ids, attn).logprobs
    assert (with_sinks - without).abs().max() > 1e-2


def test_chunked_logprobs_equal_naive_and_never_see_all_logits(tiny_dir: Path) -> None:
    ids, attn = batch(seed=1, b=2, t=10)
    model = load_gpt_oss(tiny_dir, GptOssLoadConfig(dtype=F32))
    rows: list[int] = []
    hook = model.lm_head.register_forward_hook(
        lambda mod, inp, out: rows.append(inp[0].reshape(-1, inp[0].shape[-1]).shape[0]))
    out = chunked_logprobs(model, ids, attn, chunk_size=4, temperature=0.7, with_entropy=True)
    hook.remove()
    assert rows and max(rows) <= 4
    assert out.logprobs.shape == ids.shape and out.entropy is not None
    out.logprobs[attn.bool()].sum().backward()
    chunked_grads = {n: p.grad.clone() for n, p in model.named_parameters()
                     if p.grad is not None}
    model.zero_grad()

    logits = model(input_ids=ids, attention_mask=attn).logits.float() / 0.7
    logp_all = torch.log_softmax(logits[:, :-1], -1)
    naive = logp_all.gather(-1, ids[:, 1:, None]).squeeze(-1)
    naive_ent = -(logp_all.exp() * logp_all).sum(-1)
    torch.testing.assert_close(out.logprobs[:, 1:].detach(), naive.detach(), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(out.entropy[:, 1:].detach(), naive_ent.detach(), rtol=1e-5,
                               atol=1e-5)
    assert torch.equal(out.logprobs[:, 0].detach(), torch.zeros(2))
    torch.cat([torch.zeros(2, 1), naive], 1)[attn.bool()].sum().backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(chunked_grads[name], p.grad, rtol=1e-4, atol=1e-6,
                                       msg=name)
    with pytest.raises(ValueError, match=re.escape("chunk_size=0 is invalid")):
        chunked_logprobs(model, ids, chunk_size=0)


def test_gradient_checkpointing_flag_gives_same_gradients(tiny_dir: Path) -> None:
    ids, attn = batch(seed=2)
    grads = []
    for ckpt in (False, True):
        model = load_gpt_oss(tiny_dir, GptOssLoadConfig(dtype=F32, gradient_checkpointing=ckpt,
                                                        attn_implementation="fused_sinks"))
        assert model.is_activation_checkpointing == ckpt
        chunked_logprobs(model, ids, attn).logprobs[attn.bool()].sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-6, msg=name)


def test_lora_targets_attention_and_experts_and_trains(tiny_dir: Path) -> None:
    base = load_gpt_oss(tiny_dir, GptOssLoadConfig(dtype=F32))
    frozen = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = apply_lora(base, LoraSettings(r=4, alpha=8.0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("self_attn.q_proj.lora_A" in n for n in trainable)
    assert any("mlp.experts" in n and "lora_A" in n for n in trainable)
    ids, attn = batch(seed=3)
    before = chunked_logprobs(model, ids, attn).logprobs.detach()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    for _ in range(2):
        opt.zero_grad()
        (-chunked_logprobs(model, ids, attn).logprobs[attn.bool()].mean()).backward()
        opt.step()
    after = chunked_logprobs(model, ids, attn).logprobs.detach()
    assert after[attn.bool()].mean() > before[attn.bool()].mean()
    for name, p in model.get_base_model().named_parameters():
        if "lora_" not in name and name in frozen:
            assert torch.equal(p, frozen[name]), name
    with pytest.raises(LoraConfigError, match=re.escape("LoraSettings.r=0 is invalid")):
        LoraSettings(r=0)


def test_load_refuses_other_architectures(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=16, vocab_size=10).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=re.escape("holds model_type='llama', not "
                                                       "'gpt_oss'")):
        load_gpt_oss(tmp_path, GptOssLoadConfig(dtype=F32))
    with pytest.raises(ModelLoadError, match=re.escape("GptOssLoadConfig.dtype='fp8' is "
                                                       "invalid")):
        GptOssLoadConfig(dtype="fp8")


@pytest.mark.gpu
def test_flex_attention_equals_eager_on_cuda(tiny_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    ids, attn = batch()
    ids, attn = ids.cuda(), attn.cuda()
    out = {}
    for impl in ("eager", "flex_attention", "fused_sinks"):
        model = load_gpt_oss(tiny_dir, GptOssLoadConfig(attn_implementation=impl, dtype=F32,
                                                        device="cuda"))
        lp = chunked_logprobs(model, ids, attn).logprobs
        lp[attn.bool()].sum().backward()
        sink_grad = model.model.layers[1].self_attn.sinks.grad.clone()
        out[impl] = (lp.detach()[attn.bool()], sink_grad)
    for impl in ("flex_attention", "fused_sinks"):
        torch.testing.assert_close(out[impl][0], out["eager"][0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out[impl][1], out["eager"][1], rtol=1e-3, atol=1e-4)
