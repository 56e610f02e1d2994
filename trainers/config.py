"""The training config: typed sections, loaded from TOML, overridden from the command line.

Read top to bottom: one frozen dataclass per section (every field carries its help
text in ``metadata["help"]``), :class:`TrainConfig` which validates combinations,
then :func:`load_config` (TOML file + ``section.field=value`` overrides).

A TOML file mirrors the sections::

    steps = 40
    seed = 0
    [model]
    name = "tiny"
    [env]
    id = "toy-digit"
    kwargs = { max_turns = 1 }
    [rollout]
    tasks_per_step = 4
    group_size = 8
    [algo]
    name = "grpo"
    lr = 3e-3
    [correction]
    preset = "token_tis"    # optional; fields of RolloutCorrectionConfig override it

Overrides use the same dotted names and are typed by the field's annotation:
``algo.lr=1e-4``, ``rollout.group_size=4``, ``model.lora=true``,
``env.kwargs.max_turns=2``, ``correction.preset=seq_mis``, ``algo.value_clip=none``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from trainers.errors import TrainersError
from trainers.rollout_correction import (
    PRESETS,
    RolloutCorrectionConfig,
    RolloutCorrectionConfigError,
)

__all__ = [
    "AlgoSection",
    "CheckpointSection",
    "ConfigError",
    "EnvSection",
    "LoggingSection",
    "ModelSection",
    "RolloutSection",
    "TrainConfig",
    "config_help",
    "config_to_dict",
    "load_config",
]


class ConfigError(TrainersError, ValueError):
    """A config file, key, value or combination is invalid (the message says how to fix it)."""


def _f(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text (CleanRL style); section defaults get a factory."""
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=type(default), metadata={"help": help}, **kw)
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _bad(section: str, name: str, value: Any, rule: str, fix: str) -> ConfigError:
    return ConfigError(f"{section}.{name}={value!r} is invalid: {rule}. {fix}")


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """The policy model."""

    name: str = _f("tiny", "'tiny' (a random tiny gpt-oss built in code), or a local "
                           "path / hub id of a gpt-oss checkpoint")
    dtype: Literal["float32", "bfloat16", "float16"] = _f(
        "float32", "parameter dtype: float32 on CPU, bfloat16 on GPU")
    attn_implementation: str = _f("eager", "a sink-aware attention: 'eager', 'fused_sinks', "
                                           "'flex_attention' (CUDA), "
                                           "'kernels-community/vllm-flash-attn3' (Hopper)")
    device: str = _f("cpu", "where the trainer's model lives: 'cpu', 'cuda', 'cuda:1'")
    gradient_checkpointing: bool = _f(False, "recompute decoder layers in backward")
    freeze_input_embeddings: bool = _f(False, "freeze the input embeddings (201088 x hidden; "
                                              "their dense gradient is most of a tiny model's "
                                              "update time on CPU)")
    logprob_chunk_size: int = _f(1024, "positions per LM-head call when computing log-probs")
    lora: bool = _f(False, "train LoRA adapters instead of all weights")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: float = _f(32.0, "LoRA alpha (update scale alpha / r)")
    lora_dropout: float = _f(0.0, "dropout on the LoRA input")
    lora_attention_modules: tuple[str, ...] = _f(
        ("q_proj", "k_proj", "v_proj", "o_proj"), "attention linears LoRA adapts")
    lora_expert_parameters: tuple[str, ...] = _f(
        ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        "expert weight tensors LoRA adapts (peft target_parameters)")
    tiny_layers: int = _f(2, "tiny model: decoder layers")
    tiny_hidden_size: int = _f(64, "tiny model: hidden size")
    tiny_experts: int = _f(4, "tiny model: experts per MoE layer")
    tiny_sink_scale: float = _f(1.0, "tiny model: std of the random attention-sink logits")
    init_seed: int = _f(0, "tiny model: seed of the random initialisation")

    def validate(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise _bad("model", "dtype", self.dtype, "must be float32, bfloat16 or float16",
                       "Use 'float32' on CPU, 'bfloat16' on GPU.")
        for name in ("logprob_chunk_size", "lora_r", "tiny_layers", "tiny_hidden_size",
                     "tiny_experts"):
            if getattr(self, name) < 1:
                raise _bad("model", name, getattr(self, name), "must be >= 1",
                           "Use a positive integer.")
        if self.tiny_hidden_size % 4:
            raise _bad("model", "tiny_hidden_size", self.tiny_hidden_size,
                       "must be a multiple of 4 (4 attention heads)", "Use e.g. 64.")
        from trainers.models.attention import SinkUnsupportedError, check_attn_implementation

        try:
            check_attn_implementation(self.attn_implementation, device=self.device)
        except SinkUnsupportedError as e:
            raise ConfigError(f"model.attn_implementation: {e}") from e
        if self.device.startswith("cpu") and self.dtype == "float16":
            raise _bad("model", "dtype", self.dtype, "float16 is not supported for training "
                       "on CPU", "Use model.dtype='float32' on CPU.")


@dataclass(frozen=True, kw_only=True)
class EnvSection:
    """Which environment the episodes run in."""

    id: str = _f("toy-digit", "registered env id ('toy-digit', 'python-tool', ...)")
    kwargs: dict[str, Any] = _f({}, "arguments for agent_envs.make (budgets, task source...)")  # noqa: RUF009
    url: str | None = _f(None, "run the envs on the `agent-envs serve` server at this URL "
                               "(http://HOST:PORT) instead of in the trainer's process; "
                               "several servers: URLs separated by commas (sessions go to "
                               "the least-loaded live one)")


@dataclass(frozen=True, kw_only=True)
class RolloutSection:
    """How episodes are collected each step."""

    tasks_per_step: int = _f(8, "distinct tasks (GRPO groups) per step")
    group_size: int = _f(8, "G: episodes per task, same seed and task (GRPO needs >= 2)")
    max_new_tokens: int = _f(1024, "cap on one completion")
    temperature: float = _f(1.0, "sampling temperature (the trainer's log-probs use it too)")
    top_p: float = _f(1.0, "nucleus sampling threshold (1.0 = off)")
    concurrency: int = _f(32, "episodes running at once")
    max_batch_size: int = _f(64, "most completions per policy call")
    sampler: Literal["transformers", "vllm", "llamacpp"] = _f(
        "transformers", "'transformers' samples from the trainer's own model object (CPU or "
                        "GPU); 'vllm' runs an engine whose weights sync_weights() refreshes; "
                        "'llamacpp' runs llama.cpp's llama-server on a GGUF of the model, "
                        "rewritten and restarted each step")
    vllm_kwargs: dict[str, Any] = _f({}, "extra vllm.LLM arguments (gpu_memory_utilization...)")  # noqa: RUF009
    llamacpp_kwargs: dict[str, Any] = _f(  # noqa: RUF009
        {}, "llama.cpp sampler: outtype (f32, bf16, f16, q8_0, or a llama-quantize type such as "
            "q4_0) and LlamaCppServerConfig fields (slots, ctx_size, threads, kv_cache_type)")
    allowed_tokens: Literal["all", "env"] = _f(
        "all", "'env': restrict sampling AND training log-probs to env.allowed_token_ids() "
               "(toy-digit), so a tiny random model can hit the answer tokens")
    episode_timeout_s: float = _f(900.0, "wall-time limit of one episode (infra fault past it)")

    def validate(self) -> None:
        for name in ("tasks_per_step", "group_size", "max_new_tokens", "concurrency",
                     "max_batch_size"):
            if getattr(self, name) < 1:
                raise _bad("rollout", name, getattr(self, name), "must be >= 1",
                           "Use a positive integer.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise _bad("rollout", "temperature", self.temperature, "must be finite and > 0",
                       "Use 1.0 for training.")
        if not 0.0 < self.top_p <= 1.0:
            raise _bad("rollout", "top_p", self.top_p, "must be in (0, 1]", "Use 1.0.")
        if self.sampler not in ("transformers", "vllm", "llamacpp"):
            raise _bad("rollout", "sampler", self.sampler,
                       "must be 'transformers', 'vllm' or 'llamacpp'",
                       "Use 'transformers' on CPU.")
        if self.allowed_tokens not in ("all", "env"):
            raise _bad("rollout", "allowed_tokens", self.allowed_tokens,
                       "must be 'all' or 'env'", "Use 'all' for real models.")
        if self.allowed_tokens == "env" and self.sampler == "vllm":
            raise _bad("rollout", "allowed_tokens", self.allowed_tokens,
                       "a token restriction is only implemented for the transformers and "
                       "llamacpp samplers", "Use rollout.allowed_tokens='all' with vLLM.")
        if self.llamacpp_kwargs:
            from agent_envs.rollout.errors import PolicyConfigError
            from trainers.policies.llamacpp import check_llamacpp_kwargs

            try:
                check_llamacpp_kwargs(self.llamacpp_kwargs)
            except PolicyConfigError as e:
                raise ConfigError(f"rollout.llamacpp_kwargs: {e}") from e


@dataclass(frozen=True, kw_only=True)
class AlgoSection:
    """The RL algorithm and its optimisation settings."""

    name: Literal["grpo", "ppo"] = _f("grpo", "'grpo' (group-relative advantages, no critic)"
                                              " or 'ppo' (value head + GAE)")
    epochs: int = _f(1, "passes over each step's samples")
    minibatches: int = _f(1, "optimizer steps per epoch (samples split evenly)")
    microbatches: int = _f(1, "gradient accumulation: forward/backward chunks per optimizer "
                              "step (each minibatch split evenly; the loss is normalised over "
                              "the whole minibatch, so k chunks give one pass's gradient). "
                              "PPO's advantage whitening is per chunk when > 1")
    lr: float = _f(1e-5, "AdamW learning rate of the policy")
    value_lr: float | None = _f(None, "AdamW learning rate of the value head (None: lr)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping threshold (global L2 norm)")
    clip_low: float = _f(0.2, "eps_low: the PPO ratio floor is 1 - clip_low")
    clip_high: float = _f(0.28, "eps_high: the PPO ratio ceiling is 1 + clip_high")
    agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                      "seq-mean-token-sum-norm"] = _f("token-mean", "how token losses become a "
                                                                    "scalar")
    kl_coef: float = _f(0.0, "weight of the KL(pi || pi_ref) penalty (0: no reference model)")
    entropy_coef: float = _f(0.0, "weight of the entropy bonus")
    value_coef: float = _f(0.5, "PPO: weight of the value loss")
    value_clip: float | None = _f(0.2, "PPO: value clip range around the old value (None: off)")
    gamma: float = _f(1.0, "PPO: discount per token in GAE")
    lam: float = _f(0.95, "PPO: GAE lambda")
    scale_by_std: bool = _f(True, "GRPO: divide advantages by the group std (False: Dr. GRPO)")
    normalize_advantages: bool = _f(True, "PPO: whiten advantages per minibatch")

    def validate(self) -> None:
        if self.name not in ("grpo", "ppo"):
            raise _bad("algo", "name", self.name, "must be 'grpo' or 'ppo'", "Pick one.")
        for name in ("epochs", "minibatches", "microbatches"):
            if getattr(self, name) < 1:
                raise _bad("algo", name, getattr(self, name), "must be >= 1", "Use 1.")
        for name in ("lr", "max_grad_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise _bad("algo", name, v, "must be finite and > 0",
                           f"Use e.g. {name}={'1e-5' if name == 'lr' else '1.0'}.")
        if self.value_lr is not None and not (math.isfinite(self.value_lr) and self.value_lr > 0):
            raise _bad("algo", "value_lr", self.value_lr, "must be None or finite and > 0",
                       "Use e.g. 1e-3, or none to share algo.lr.")
        for name in ("weight_decay", "kl_coef", "entropy_coef", "value_coef"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise _bad("algo", name, v, "must be finite and >= 0", f"Use {name}=0.0.")
        if not 0.0 <= self.clip_low < 1.0:
            raise _bad("algo", "clip_low", self.clip_low, "must be in [0, 1)", "Use 0.2.")
        if not (math.isfinite(self.clip_high) and self.clip_high >= 0):
            raise _bad("algo", "clip_high", self.clip_high, "must be finite and >= 0",
                       "Use 0.28.")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise _bad("algo", name, getattr(self, name), "must be in [0, 1]",
                           "Use gamma=1.0, lam=0.95.")


@dataclass(frozen=True, kw_only=True)
class LoggingSection:
    """Where metrics, plots and checkpoints go."""

    out_dir: str = _f("runs/train", "run directory: metrics.jsonl, tensorboard/, "
                                    "checkpoints/, metrics.png")
    tensorboard: bool = _f(True, "write TensorBoard event files under out_dir/tensorboard")
    console: bool = _f(True, "print one line of metrics per step")
    progress: bool = _f(True, "show tqdm progress bars")
    plot: bool = _f(True, "save out_dir/metrics.png at the end")


@dataclass(frozen=True, kw_only=True)
class CheckpointSection:
    """Checkpoints and resuming."""

    every: int = _f(0, "save a checkpoint every N steps (0: only at the end)")
    keep_last: int = _f(2, "checkpoints kept on disk (older ones are deleted)")
    resume: bool = _f(False, "continue from the newest checkpoint in out_dir/checkpoints")
    save_final: bool = _f(True, "save a checkpoint after the last step")

    def validate(self) -> None:
        if self.every < 0:
            raise _bad("checkpoint", "every", self.every, "must be >= 0",
                       "Use 0 for no periodic checkpoints.")
        if self.keep_last < 1:
            raise _bad("checkpoint", "keep_last", self.keep_last, "must be >= 1", "Use 2.")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs. Build with :func:`load_config` or directly."""

    steps: int = _f(10, "training steps (each: collect, then update)")
    seed: int = _f(0, "base seed: model init, rollouts, minibatch order")
    model: ModelSection = _f(ModelSection(), "the policy model")  # noqa: RUF009
    env: EnvSection = _f(EnvSection(), "the environment")  # noqa: RUF009
    rollout: RolloutSection = _f(RolloutSection(), "episode collection")  # noqa: RUF009
    algo: AlgoSection = _f(AlgoSection(), "algorithm and optimiser")  # noqa: RUF009
    correction: RolloutCorrectionConfig = _f(  # noqa: RUF009
        RolloutCorrectionConfig(), "rollout correction between sampler and trainer "
                                   "(a preset name plus field overrides in TOML)")
    logging: LoggingSection = _f(LoggingSection(), "outputs")  # noqa: RUF009
    checkpoint: CheckpointSection = _f(CheckpointSection(), "checkpoints and resume")  # noqa: RUF009

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise _bad("train", "steps", self.steps, "must be >= 1", "Use e.g. steps=20.")
        self.model.validate()
        self.rollout.validate()
        self.algo.validate()
        self.checkpoint.validate()
        r, a = self.rollout, self.algo
        if a.name == "grpo" and r.group_size < 2:
            raise _bad("rollout", "group_size", r.group_size,
                       "GRPO needs >= 2 episodes per task to compute group-relative "
                       "advantages (a group of one always has advantage 0)",
                       "Set rollout.group_size=8, or algo.name='ppo'.")
        episodes = r.tasks_per_step * r.group_size
        if a.minibatches > episodes:
            raise _bad("algo", "minibatches", a.minibatches,
                       f"more minibatches than episodes per step ({r.tasks_per_step} tasks x "
                       f"{r.group_size} = {episodes})",
                       f"Use algo.minibatches <= {episodes}.")
        if a.minibatches * a.microbatches > episodes:
            raise _bad("algo", "microbatches", a.microbatches,
                       f"minibatches x microbatches = {a.minibatches} x {a.microbatches} = "
                       f"{a.minibatches * a.microbatches} chunks, more than the episodes per "
                       f"step ({r.tasks_per_step} tasks x {r.group_size} = {episodes}): some "
                       f"chunks would be empty",
                       f"Use algo.microbatches <= {episodes // a.minibatches}.")
        self._check_env()
        if self.rollout.sampler == "vllm" and not self.model.device.startswith("cuda"):
            raise _bad("model", "device", self.model.device, "the vLLM sampler needs the "
                       "trainer on a CUDA device", "Set model.device='cuda', or "
                       "rollout.sampler='transformers'.")

    def _check_env(self) -> None:
        """The env id and the *names* in env.kwargs, checked now (a misspelt argument gets the
        closest name); values are checked when the env is made. An env that is not registered
        here is left to the server when env.url is set."""
        from agent_envs.errors import MissingDependencyError, UnknownArgumentError, UnknownEnvError
        from agent_envs.registry import check_env_kwargs

        try:
            check_env_kwargs(self.env.id, self.env.kwargs)
        except UnknownArgumentError as e:
            raise ConfigError(f"env.kwargs: {e}. Set them as env.kwargs.NAME=VALUE.") from e
        except (UnknownEnvError, MissingDependencyError) as e:
            if self.env.url is None:
                raise ConfigError(f"env.id: {e}") from e

    @property
    def out_dir(self) -> Path:
        """``logging.out_dir`` as a path."""
        return Path(self.logging.out_dir)


# --------------------------------------------------------------------------- loading

_SECTIONS = {"model": ModelSection, "env": EnvSection, "rollout": RolloutSection,
             "algo": AlgoSection, "logging": LoggingSection, "checkpoint": CheckpointSection}
_TOP = ("steps", "seed")
_CORRECTION_FIELDS = tuple(f.name for f in dataclasses.fields(RolloutCorrectionConfig))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _known_keys() -> list[str]:
    keys = list(_TOP)
    for sec, cls in _SECTIONS.items():
        keys += [f"{sec}.{f.name}" for f in dataclasses.fields(cls)]
    keys += [f"correction.{n}" for n in ("preset", *_CORRECTION_FIELDS)]
    return keys


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint} See `agent-envs train --help-config`"
                       f" for every key.")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from TOML or a CLI string) to annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}={value!r}: cannot convert")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}={value!r} is invalid: must be one of {list(args)}. "
                          f"Pick one of those.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r} is invalid: expected a boolean. Use true or false.")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid: expected an integer. Use e.g. 4.")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"{key}={value!r} is invalid: expected an integer. "
                              f"Use e.g. 4.") from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise ConfigError(f"{key}={value!r} is invalid: expected a number. "
                              f"Use e.g. 1e-5.") from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={value!r} is invalid: expected a string. Quote it.")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} is invalid: expected a list. Use a,b,c or "
                              f"[\"a\", \"b\"].")
        return tuple(_coerce(key, v, args[0]) for v in value)
    if origin is dict:
        if isinstance(value, str):
            value = _parse_literal(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} is invalid: expected a table. Use "
                              f"{key}.NAME=VALUE, or {{ name = value }} in TOML.")
        return dict(value)
    return value


def _parse_literal(text: str) -> Any:
    """A CLI value as TOML (numbers, booleans, lists, inline tables), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _build_section(cls: type, name: str, table: Mapping[str, Any]) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{name}] must be a table, got {table!r}. Write it as a TOML "
                          f"[{name}] section.")
    hints = _hints(cls)
    kwargs = {}
    for key, value in table.items():
        if key not in hints:
            raise _unknown(f"{name}.{key}")
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def _build_correction(table: Mapping[str, Any]) -> RolloutCorrectionConfig:
    table = dict(table)
    preset = table.pop("preset", None)
    hints = _hints(RolloutCorrectionConfig)
    kwargs = {}
    for key, value in table.items():
        if key not in hints:
            raise _unknown(f"correction.{key}")
        kwargs[key] = _coerce(f"correction.{key}", value, hints[key])
    try:
        if preset is None:
            return RolloutCorrectionConfig(**kwargs)
        if preset not in PRESETS:
            raise ConfigError(f"correction.preset={preset!r} is invalid: must be one of "
                              f"{sorted(PRESETS)}. Pick one of those.")
        return RolloutCorrectionConfig.preset(str(preset), **kwargs)
    except RolloutCorrectionConfigError as e:
        raise ConfigError(f"[correction]: {e}") from e


def _set_dotted(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is invalid: expected KEY=VALUE, e.g. "
                          f"algo.lr=1e-4.")
    key, raw = override.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if len(parts) == 1:
        if key not in _TOP:
            raise _unknown(key)
        data[key] = raw
        return
    section, name = parts[0], parts[1]
    if section not in _SECTIONS and section != "correction":
        raise _unknown(key)
    table = data.setdefault(section, {})
    if section == "env" and name == "kwargs" and len(parts) > 2:
        sub = table.setdefault("kwargs", {})
        for p in parts[2:-1]:
            sub = sub.setdefault(p, {})
        sub[parts[-1]] = None if raw.strip().lower() in ("none", "null") else _parse_literal(raw)
        return
    if len(parts) != 2:
        raise _unknown(key)
    if section == "correction":
        if name not in ("preset", *_CORRECTION_FIELDS):
            raise _unknown(key)
        if name == "preset":
            # A new preset replaces the file's estimator fields, keeps nothing stale.
            data["correction"] = {"preset": raw}
            return
        hint = _hints(RolloutCorrectionConfig)[name]
        table[name] = raw if typing.get_origin(hint) is Literal else _parse_literal(raw)
        return
    hints = _hints(_SECTIONS[section])
    if name not in hints:
        raise _unknown(key)
    tp = hints[name]
    table[name] = _parse_literal(raw) if typing.get_origin(tp) is dict else raw


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (the TOML layout).

    Raises:
        ConfigError: unknown keys, values of the wrong type, invalid combinations.
    """
    data = dict(data)
    kwargs: dict[str, Any] = {}
    for key in list(data):
        if key in _TOP:
            kwargs[key] = _coerce(key, data.pop(key), int)
        elif key in _SECTIONS:
            kwargs[key] = _build_section(_SECTIONS[key], key, data.pop(key))
        elif key == "correction":
            kwargs[key] = _build_correction(data.pop(key))
        else:
            raise _unknown(key)
    try:
        return TrainConfig(**kwargs)
    except RolloutCorrectionConfigError as e:
        raise ConfigError(str(e)) from e


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a TOML config and apply ``section.field=value`` overrides.

    Args:
        path: a TOML file, or None for the defaults.
        overrides: ``"algo.lr=1e-4"``-style strings, applied in order.

    Raises:
        ConfigError: the file is missing or not TOML, or a key/value/combination is invalid.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist. Pass a TOML file, e.g. "
                              f"configs/tiny-cpu.toml.")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}. Fix the "
                              f"syntax.") from e
    for ov in overrides:
        _set_dotted(data, ov)
    return config_from_dict(data)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as nested plain dicts (for checkpoints and logs)."""
    return dataclasses.asdict(config)


def config_help() -> str:
    """Every key with its type, default and help text (for ``--help-config``)."""
    lines = []
    for key in _TOP:
        f = {f.name: f for f in dataclasses.fields(TrainConfig)}[key]
        lines.append(f"{key} = {f.default!r}  # {f.metadata.get('help', '')}")
    for sec, cls in _SECTIONS.items():
        lines.append(f"\n[{sec}]  # {cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ''}")
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            tp = getattr(hints[f.name], "__name__", str(hints[f.name]))
            lines.append(f"{f.name} = {default!r}  # ({tp}) {f.metadata.get('help', '')}")
    lines.append("\n[correction]  # preset = one of " + ", ".join(sorted(PRESETS))
                 + "; then any RolloutCorrectionConfig field: " + ", ".join(_CORRECTION_FIELDS))
    return "\n".join(lines)
