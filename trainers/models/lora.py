"""LoRA for gpt-oss: attention projections and the (3-D parameter) MoE experts, via peft."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from trainers.errors import TrainersError

__all__ = ["LoraConfigError", "LoraSettings", "apply_lora"]


class LoraConfigError(TrainersError, ValueError):
    """A :class:`LoraSettings` field is invalid."""


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA adapters for gpt-oss.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator (the update is ``alpha / r * B A``).
        dropout: dropout on the adapter input.
        attention_modules: attention linears to adapt.
        expert_parameters: expert weight tensors (``nn.Parameter`` of shape
            ``[experts, in, out]``) adapted through peft's ``target_parameters``.
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    attention_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    expert_parameters: tuple[str, ...] = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise LoraConfigError(f"LoraSettings.r={self.r!r} is invalid: must be >= 1. "
                                  f"Use e.g. r=16.")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise LoraConfigError(f"LoraSettings.alpha={self.alpha!r} is invalid: must be "
                                  f"finite and > 0. Use e.g. alpha=2*r.")
        if not 0.0 <= self.dropout < 1.0:
            raise LoraConfigError(f"LoraSettings.dropout={self.dropout!r} is invalid: must be "
                                  f"in [0, 1). Use 0.0.")
        if not (self.attention_modules or self.expert_parameters):
            raise LoraConfigError("LoraSettings has no targets: attention_modules and "
                                  "expert_parameters are both empty. Name at least one.")


def apply_lora(model: torch.nn.Module, settings: LoraSettings | None = None) -> Any:
    """Wrap ``model`` with LoRA adapters; only the adapters are trainable.

    Returns:
        A ``peft.PeftModel`` (its ``get_base_model()`` is ``model``).
    """
    from peft import LoraConfig, get_peft_model

    settings = settings if settings is not None else LoraSettings()
    lora = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=list(settings.attention_modules) or None,
        target_parameters=list(settings.expert_parameters) or None,
        bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
