"""Load gpt-oss for training: sink-aware attention, dtype, gradient checkpointing, a tiny config.

Real checkpoints ship MXFP4 expert weights; training needs them dequantized to bf16
(``Mxfp4Config(dequantize=True)``), which :func:`load_gpt_oss` asks for whenever the
checkpoint's config says ``quant_method: mxfp4``. Tests use :func:`tiny_gpt_oss_config`
and :func:`build_tiny_gpt_oss`: the real architecture (sinks, sliding/full layers, MoE
with top-k routing, the real 201088-token vocabulary) at toy width, built in code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from agent_envs.harmony import ENDOFTEXT, RETURN, VOCAB_SIZE
from trainers.errors import TrainersError
from trainers.models.attention import check_attn_implementation, register_sink_attention

if TYPE_CHECKING:
    from transformers import GptOssConfig, GptOssForCausalLM

__all__ = [
    "GPT_OSS_20B_HPARAMS",
    "GPT_OSS_VOCAB_SIZE",
    "GptOssLoadConfig",
    "ModelLoadError",
    "build_tiny_gpt_oss",
    "gpt_oss_20b_config",
    "load_gpt_oss",
    "tiny_gpt_oss_config",
]

#: The harmony (o200k_harmony) vocabulary size of gpt-oss.
GPT_OSS_VOCAB_SIZE = VOCAB_SIZE

#: The architecture of openai/gpt-oss-20b, as its published ``config.json`` gives it
#: (the quantization block left out: a model built from this is unquantized).
GPT_OSS_20B_HPARAMS: dict[str, Any] = {
    "num_hidden_layers": 24,
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 32,
    "num_experts_per_tok": 4,
    "experts_per_token": 4,
    "vocab_size": GPT_OSS_VOCAB_SIZE,
    "sliding_window": 128,
    "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(24)],
    "max_position_embeddings": 131072,
    "initial_context_length": 4096,
    "rope_theta": 150000.0,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "truncate": False, "original_max_position_embeddings": 4096},
    "rms_norm_eps": 1e-05,
    "swiglu_limit": 7.0,
    "hidden_act": "silu",
    "attention_bias": True,
    "attention_dropout": 0.0,
    "router_aux_loss_coef": 0.9,
    "output_router_logits": False,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "pad_token_id": ENDOFTEXT,
    "eos_token_id": RETURN,
    "use_cache": True,
}

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


class ModelLoadError(TrainersError, ValueError):
    """A model could not be loaded as asked (bad option, not a gpt-oss checkpoint, ...)."""


@dataclass(frozen=True, kw_only=True)
class GptOssLoadConfig:
    """How to load gpt-oss for training.

    Attributes:
        attn_implementation: a sink-aware implementation (see
            :data:`trainers.models.attention.SINK_AWARE_IMPLEMENTATIONS`).
        dtype: ``"bfloat16"`` (real runs), ``"float32"`` (CPU tests) or ``"float16"``.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        gradient_checkpointing: recompute each decoder layer in backward to save memory.
        dequantize_mxfp4: dequantize MXFP4 expert weights to ``dtype`` on load.
    """

    attn_implementation: str = "eager"
    dtype: str = "bfloat16"
    device: str = "cpu"
    gradient_checkpointing: bool = False
    dequantize_mxfp4: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ModelLoadError(f"GptOssLoadConfig.dtype={self.dtype!r} is invalid: must be "
                                 f"one of {sorted(_DTYPES)}. Use 'bfloat16' on GPU, "
                                 f"'float32' on CPU.")
        check_attn_implementation(self.attn_implementation, device=self.device)


def tiny_gpt_oss_config(
    *, num_hidden_layers: int = 2, hidden_size: int = 64, num_attention_heads: int = 4,
    num_key_value_heads: int = 2, num_local_experts: int = 4, num_experts_per_tok: int = 2,
    vocab_size: int = GPT_OSS_VOCAB_SIZE, sliding_window: int = 4, **overrides: Any,
) -> GptOssConfig:
    """A gpt-oss config of toy width: alternating sliding/full layers, sinks, MoE.

    Keeps the real vocabulary by default (201088 x 64 embeddings are ~13M parameters).
    ``overrides`` are passed to ``transformers.GptOssConfig``.
    """
    from transformers import GptOssConfig

    head_dim = hidden_size // num_attention_heads
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention"
                   for i in range(num_hidden_layers)]
    kwargs: dict[str, Any] = {
        "num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size,
        "intermediate_size": hidden_size, "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads, "head_dim": head_dim,
        "num_local_experts": num_local_experts, "num_experts_per_tok": num_experts_per_tok,
        "vocab_size": vocab_size, "sliding_window": sliding_window, "layer_types": layer_types,
        "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "pad_token_id": ENDOFTEXT, "eos_token_id": RETURN,
    }
    kwargs.update(overrides)
    return GptOssConfig(**kwargs)


def gpt_oss_20b_config(**overrides: Any) -> GptOssConfig:
    """``transformers.GptOssConfig`` with gpt-oss-20b's real hyperparameters.

    Works across transformers releases: 5.x takes rope settings as ``rope_parameters``
    (``rope_theta`` inside), 4.x as ``rope_theta`` + ``rope_scaling``. ``overrides`` replace
    entries of :data:`GPT_OSS_20B_HPARAMS` (e.g. ``num_hidden_layers=2`` for a slice of
    the model with its real widths; ``layer_types`` is cut to the new depth).
    """
    import transformers
    from transformers import GptOssConfig

    hp = {**GPT_OSS_20B_HPARAMS, **overrides}
    if "num_hidden_layers" in overrides and "layer_types" not in overrides:
        hp["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention"
                             for i in range(hp["num_hidden_layers"])]
    if int(transformers.__version__.split(".")[0]) >= 5:
        rope = dict(hp.pop("rope_scaling"))
        rope["rope_theta"] = hp.pop("rope_theta")
        hp["rope_parameters"] = rope
    return GptOssConfig(**hp)


def build_tiny_gpt_oss(config: GptOssConfig | None = None, *, seed: int = 0,
                       sink_scale: float = 1.0) -> GptOssForCausalLM:
    """A randomly initialised gpt-oss (float32, eager attention) from a tiny config.

    Sinks are drawn with std ``sink_scale`` (the library's 0.02 default would make them
    nearly invisible, hiding bugs that ignore them); router weights get std 1 so that
    top-k routing actually varies between tokens.
    """
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    config = config if config is not None else tiny_gpt_oss_config()
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config).float()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for layer in model.model.layers:
            layer.self_attn.sinks.copy_(torch.randn(layer.self_attn.sinks.shape,
                                                    generator=gen) * sink_scale)
            router = layer.mlp.router.weight
            router.copy_(torch.randn(router.shape, generator=gen) / math.sqrt(router.shape[1]))
    return model.eval()


def load_gpt_oss(path: str | os.PathLike[str], config: GptOssLoadConfig | None = None,
                 ) -> GptOssForCausalLM:
    """Load a gpt-oss checkpoint (a local directory or hub id) ready for training.

    Args:
        path: what ``from_pretrained`` accepts.
        config: load options; defaults to ``GptOssLoadConfig()`` (eager, bf16, CPU).

    Returns:
        The model on ``config.device``, in train mode, with the requested attention and
        gradient checkpointing.

    Raises:
        SinkUnsupportedError: the attention implementation ignores sinks.
        ModelLoadError: the checkpoint is not gpt-oss.
    """
    from transformers import AutoConfig, GptOssForCausalLM

    config = config if config is not None else GptOssLoadConfig()
    register_sink_attention()
    hf_config = AutoConfig.from_pretrained(path)
    if getattr(hf_config, "model_type", None) != "gpt_oss":
        raise ModelLoadError(
            f"{os.fspath(path)!r} holds model_type={getattr(hf_config, 'model_type', None)!r},"
            f" not 'gpt_oss'. Point at a gpt-oss checkpoint (e.g. openai/gpt-oss-20b).")
    kwargs: dict[str, Any] = {
        "dtype": _DTYPES[config.dtype], "attn_implementation": config.attn_implementation,
    }
    quant = getattr(hf_config, "quantization_config", None) or {}
    quant_method = quant.get("quant_method") if isinstance(quant, dict) else getattr(
        quant, "quant_method", None)
    if config.dequantize_mxfp4 and str(quant_method).lower().endswith("mxfp4"):
        from transformers import Mxfp4Config

        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    model = GptOssForCausalLM.from_pretrained(path, **kwargs)
    model.to(config.device)
    if config.gradient_checkpointing:
        kwargs_ckpt = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs_ckpt)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs_ckpt)
        model.config.use_cache = False
    model.train()
    return model
