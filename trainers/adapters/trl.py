"""Train on agent_envs environments with TRL's ``GRPOTrainer``.

TRL (checked against the installed 1.x source) lets a caller replace its
generation with ``rollout_func(prompts, trainer) -> dict``. The dict must hold
``prompt_ids``, ``completion_ids`` and ``logprobs`` (lists of lists, one row
per prompt); an ``env_mask`` key (1 = model token, 0 = env token) is popped
and used as TRL's ``tool_mask``, which multiplies the loss mask (and the vLLM
importance-sampling mask); every other key is copied into the batch rows and
reaches the reward functions as a keyword argument. This module provides:

- :class:`EnvRollout`: the ``rollout_func``. Each prompt is a task id; it runs
  one episode per prompt with our :class:`~agent_envs.rollout.RolloutCollector`,
  sampling from the model TRL is training (a ``TransformersPolicy`` over the
  unwrapped model by default), and returns our exact token ids, the env mask,
  the sampler's processed log-probs and the episode outcome (``env_reward``,
  ``env_solved``, ``env_infra_error``, ...).
- :func:`episode_reward`: the reward function: it returns the verifier's
  episode reward (``None``, "unscorable", for infra-flagged episodes, which TRL
  gives advantage 0) instead of re-scoring text.
- :func:`task_dataset`: a ``datasets.Dataset`` whose ``prompt`` column holds
  task ids; TRL's sampler repeats each row ``num_generations`` times (a GRPO group).
- :class:`HarmonyTokenizer`: a ``transformers`` tokenizer backed by
  openai-harmony, for when no gpt-oss tokenizer can be loaded (offline, tiny models).

Limits of what TRL can take (see :func:`episodes_to_trl`):

- One completion per prompt. A multi-turn episode becomes one completion: the
  sampled turns with the env's tokens (tool results, notices, the next
  ``<|start|>assistant``) between them, masked out by ``env_mask``. An episode
  with a segment break (a re-rendered prompt, e.g. ``answer_retries > 0``)
  cannot be one sequence: it raises, or keeps only its last segment.
- TRL cannot drop a sample: an infra-flagged episode is kept with reward
  ``None`` (advantage 0) and ``env_mask`` all 0, so it adds no gradient.
- Sampler log-probs are used by TRL only with ``use_vllm=True`` and
  ``vllm_importance_sampling_correction`` (token/sequence TIS or MIS) or
  with ``off_policy_mask_threshold``; with ``use_vllm=False`` TRL assumes
  its own forward pass matches the sampler.
- TRL's ``max_completion_length`` caps each *turn* here, not the whole episode
  (the env's ``max_tokens`` bounds that).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from transformers import PreTrainedTokenizer

from agent_envs.harmony import FIRST_SPECIAL_ID, RETURN, VOCAB_SIZE
from agent_envs.rollout import RolloutCollector, RolloutConfig, derive_seed, draw_tasks
from agent_envs.rollout.episode import Episode, Segment
from agent_envs.rollout.policy import Policy, SamplingParams
from trainers.errors import TrainersError

__all__ = [
    "EnvRollout", "HarmonyTokenizer", "TRLAdapterConfig", "TRLAdapterError", "episode_reward",
    "episodes_to_trl", "sampling_from_trl_args", "task_dataset",
]

#: ``<|return|>``: stands in for a prompt/completion that has no tokens (masked out).
_FILLER_TOKEN = RETURN
_FIRST_SPECIAL_ID = FIRST_SPECIAL_ID  # o200k: ids from here on are special tokens
_HARMONY_VOCAB_SIZE = VOCAB_SIZE


class TRLAdapterError(TrainersError, ValueError):
    """The TRL adapter was used in a way it cannot serve (the message gives the value and the fix)."""


@dataclass(frozen=True, kw_only=True)
class TRLAdapterConfig:
    """What :class:`EnvRollout` runs.

    Attributes:
        env_id: Registered env id (``"python-tool"``).
        env_kwargs: Passed to ``agent_envs.make`` for every env.
        max_turn_tokens: Cap on one sampled turn; None = TRL's ``max_completion_length``.
        concurrency: Episodes run at once per rollout call.
        max_batch_size: Most requests per policy call.
        multi_segment: An episode with more than one segment: ``"error"``
            raises, ``"last"`` trains on its last segment only.
        episode_timeout_s: Wall-time limit of one episode (None = none); an
            episode past it is infra-flagged.
        seed: Base seed; sampling seeds derive from it, the global step, the
            process index and the call count.
        check_task_ids: Check every prompt is a task id of the env before running.
    """

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_turn_tokens: int | None = None
    concurrency: int = 32
    max_batch_size: int = 16
    multi_segment: Literal["error", "last"] = "error"
    episode_timeout_s: float | None = 900.0
    seed: int = 0
    check_task_ids: bool = True

    def __post_init__(self) -> None:
        if self.multi_segment not in ("error", "last"):
            raise TRLAdapterError(f"TRLAdapterConfig.multi_segment must be 'error' or 'last', "
                                  f"got {self.multi_segment!r}.")
        for name in ("concurrency", "max_batch_size"):
            if int(getattr(self, name)) < 1:
                raise TRLAdapterError(f"TRLAdapterConfig.{name} must be >= 1, "
                                      f"got {getattr(self, name)!r}.")
        if self.max_turn_tokens is not None and self.max_turn_tokens < 1:
            raise TRLAdapterError(f"TRLAdapterConfig.max_turn_tokens must be >= 1 or None (use "
                                  f"TRL's max_completion_length), got {self.max_turn_tokens!r}.")


# -- episodes -> TRL ------------------------------------------------------------------------------


def _trl_segment(ep: Episode, multi_segment: str) -> Segment | None:
    if len(ep.segments) > 1 and not ep.infra:
        if multi_segment == "error":
            raise TRLAdapterError(
                f"episode {ep.episode_id} (task {ep.task_id!r}) has {len(ep.segments)} segments; "
                "TRL takes one completion per prompt, so a re-rendered prompt cannot be "
                "flattened. Set the env's answer_retries=0, or TRLAdapterConfig(multi_segment="
                "'last') to train on the last segment only.")
        return ep.segments[-1]
    return ep.segments[0] if ep.segments else None


def episodes_to_trl(episodes: Sequence[Episode], *,
                    multi_segment: Literal["error", "last"] = "error") -> dict[str, list[Any]]:
    """Turn episodes (one per prompt, in prompt order) into a ``rollout_func`` result.

    Each episode's segment becomes one row: ``prompt_ids`` is the env's first
    observation, ``completion_ids`` every token after it (sampled turns and env
    tokens interleaved, exactly as the env produced them), ``env_mask`` 1 on
    sampled tokens and 0 on env tokens, ``logprobs`` the sampler's processed
    log-probs (0.0 on env tokens). Infra-flagged episodes get ``env_mask`` all 0
    and ``env_reward`` None. A row with no tokens (the env failed at reset)
    gets one masked ``<|return|>`` so TRL's tensors stay well formed.

    Args:
        episodes: The episodes.
        multi_segment: ``"error"`` or ``"last"`` (see ``TRLAdapterConfig``).

    Returns:
        ``prompt_ids``, ``completion_ids``, ``logprobs``, ``env_mask`` and the
        per-row columns ``env_reward``, ``env_solved``, ``env_infra_error``,
        ``env_turns``, ``env_tool_calls``, ``env_tokens``, ``env_episode_id``,
        ``env_task_id``.

    Raises:
        TRLAdapterError: An episode has several segments and ``multi_segment="error"``.
    """
    out: dict[str, list[Any]] = {k: [] for k in (
        "prompt_ids", "completion_ids", "logprobs", "env_mask", "env_reward", "env_solved",
        "env_infra_error", "env_turns", "env_tool_calls", "env_tokens", "env_episode_id",
        "env_task_id")}
    for ep in episodes:
        seg = _trl_segment(ep, multi_segment)
        prompt = list(seg.prompt) if seg is not None and seg.prompt else [_FILLER_TOKEN]
        if seg is not None and seg.completion:
            completion, mask = list(seg.completion), [int(m) for m in seg.loss_mask]
            logprobs = [float(x) for x in seg.logprobs]
        else:
            completion, mask, logprobs = [_FILLER_TOKEN], [0], [0.0]
        if ep.infra:
            mask = [0] * len(completion)
        out["prompt_ids"].append(prompt)
        out["completion_ids"].append(completion)
        out["logprobs"].append(logprobs)
        out["env_mask"].append(mask)
        out["env_reward"].append(None if ep.infra else float(ep.reward))
        out["env_solved"].append(bool(ep.solved))
        out["env_infra_error"].append(ep.infra_error)
        out["env_turns"].append(len(ep.turns))
        out["env_tool_calls"].append(sum(1 for t in ep.turns if t.tool_outcome))
        out["env_tokens"].append(len(mask) - sum(mask) if not ep.infra else 0)
        out["env_episode_id"].append(ep.episode_id)
        out["env_task_id"].append(ep.task_id)
    return out


# -- the reward function --------------------------------------------------------------------------


def episode_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
                   ) -> list[float | None]:
    """TRL reward function: the environment's episode reward, read, not recomputed.

    Pass it as ``reward_funcs=[episode_reward]`` together with
    ``rollout_func=EnvRollout(...)``; TRL hands it the ``env_reward`` column
    the rollout returned. Infra-flagged episodes give ``None`` (TRL treats the
    row as unscorable: advantage 0). When TRL passes ``log_metric``, it also
    logs ``env/solved``, ``env/turns``, ``env/tool_calls``, ``env/env_tokens``
    and ``env/infra_frac`` (means over the batch).

    Raises:
        TRLAdapterError: ``env_reward`` is missing (the rollout was not ``EnvRollout``).
    """
    rewards = kwargs.get("env_reward")
    if rewards is None:
        raise TRLAdapterError(
            "episode_reward needs the 'env_reward' column that EnvRollout returns, and got "
            f"only {sorted(k for k in kwargs if k not in ('log_metric', 'log_extra'))}; "
            "pass rollout_func=EnvRollout(TRLAdapterConfig(env_id=...)) to GRPOTrainer.")
    if len(rewards) != len(completions):
        raise TRLAdapterError(f"episode_reward got {len(rewards)} env rewards for "
                              f"{len(completions)} completions; the rollout must return one row "
                              "per prompt.")
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and rewards:
        n = len(rewards)
        infra = [e is not None for e in kwargs.get("env_infra_error", [None] * n)]
        log_metric("env/infra_frac", sum(infra) / n)
        for key, name in (("env_solved", "env/solved"), ("env_turns", "env/turns"),
                          ("env_tool_calls", "env/tool_calls"), ("env_tokens", "env/env_tokens")):
            vals = [float(v) for v, bad in zip(kwargs.get(key, []), infra) if not bad]
            if vals:
                log_metric(name, sum(vals) / len(vals))
    return [None if r is None or (isinstance(r, float) and math.isnan(r)) else float(r)
            for r in rewards]


# -- the dataset ----------------------------------------------------------------------------------


def task_dataset(env_id: str, num_tasks: int, *, seed: int = 0, split: str = "train",
                 env_kwargs: Mapping[str, Any] | None = None) -> Any:
    """A ``datasets.Dataset`` with a ``prompt`` column of task ids for ``GRPOTrainer``.

    Task ``i`` is ``env.task_source.sample(derive_seed(seed, "task", i), split)``.

    Args:
        env_id: Registered env id.
        num_tasks: Rows.
        seed: Base seed of the task draw.
        split: ``"train"`` or ``"test"``.
        env_kwargs: Passed to ``agent_envs.make`` (the task source lives in the env).
    """
    if num_tasks < 1:
        raise TRLAdapterError(f"task_dataset num_tasks must be >= 1, got {num_tasks!r}.")
    from datasets import Dataset

    tasks = draw_tasks(env_id, num_tasks, seed=seed, split=split, env_kwargs=env_kwargs)
    return Dataset.from_dict({"prompt": [t.id for t in tasks]})


# -- the rollout function -------------------------------------------------------------------------


def sampling_from_trl_args(args: Any) -> SamplingParams:
    """``SamplingParams`` from a ``GRPOConfig`` (temperature, top_p, top_k).

    Raises:
        TRLAdapterError: ``min_p``, ``repetition_penalty`` or ``generation_kwargs``
            is set: our policies do not implement them, and ignoring them would
            make the sampler differ from what the config says.
    """
    unsupported = []
    if getattr(args, "min_p", None) not in (None, 0, 0.0):
        unsupported.append(f"min_p={args.min_p!r} (use None)")
    if getattr(args, "repetition_penalty", 1.0) not in (None, 1.0):
        unsupported.append(f"repetition_penalty={args.repetition_penalty!r} (use 1.0)")
    if getattr(args, "generation_kwargs", None):
        unsupported.append(f"generation_kwargs={args.generation_kwargs!r} (use None)")
    if unsupported:
        raise TRLAdapterError("GRPOConfig sets sampling options EnvRollout cannot honour: "
                              + "; ".join(unsupported) + ". Only temperature, top_p and top_k "
                              "are applied.")
    top_k = int(getattr(args, "top_k", 0) or 0)
    return SamplingParams(temperature=float(args.temperature), top_p=float(args.top_p),
                          top_k=top_k if top_k > 0 else -1)


class EnvRollout:
    """A TRL ``rollout_func`` that runs agent_envs episodes.

    Args:
        config: What to run.
        policy_factory: ``trainer -> Policy``, called once per rollout call
            (e.g. a ``VLLMPolicy`` over the engine TRL keeps in sync). Default:
            a ``TransformersPolicy`` over the model TRL is training, at the
            current weights, with processed log-probs.
        env_factory: Makes one env (default ``agent_envs.make(env_id, **env_kwargs)``).

    Attributes:
        last_episodes: The ``Episode`` records of the latest call (prompt order).

    Example:
        >>> rollout = EnvRollout(TRLAdapterConfig(env_id="python-tool"))
        >>> trainer = GRPOTrainer(model=model, processing_class=tokenizer,
        ...                       reward_funcs=[episode_reward], rollout_func=rollout,
        ...                       train_dataset=task_dataset("python-tool", 256), args=args)
    """

    def __init__(self, config: TRLAdapterConfig, *,
                 policy_factory: Callable[[Any], Policy] | None = None,
                 env_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.policy_factory = policy_factory
        self.env_factory = env_factory
        self.last_episodes: list[Episode] = []
        self._calls = 0
        self._known_ids: set[str] = set()
        self._probe: Any = None

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list[Any]]:
        """Run one episode per prompt (a task id) and return TRL's rollout dict."""
        task_ids = self._task_ids(prompts)
        args = trainer.args
        sampling = sampling_from_trl_args(args)
        max_turn = self.config.max_turn_tokens or int(args.max_completion_length or 4096)
        step = int(trainer.state.global_step)
        process = int(getattr(trainer.accelerator, "process_index", 0))
        self._calls += 1
        seed = derive_seed(self.config.seed, "trl", step, process, self._calls)
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = bool(getattr(model, "training", False))
        try:
            policy = (self.policy_factory(trainer) if self.policy_factory is not None
                      else self._default_policy(trainer, model, step, seed))
            episodes = self._collect(policy, task_ids, sampling, max_turn, seed)
        finally:
            if hasattr(model, "train"):
                model.train(was_training)
        self.last_episodes = episodes
        return episodes_to_trl(episodes, multi_segment=self.config.multi_segment)

    def _default_policy(self, trainer: Any, model: Any, step: int, seed: int) -> Policy:
        from trainers.policies.hf import TransformersPolicy

        tok = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        pad = getattr(tok, "pad_token_id", None)
        return TransformersPolicy(model, version=str(step), seed=seed,
                                  pad_token_id=int(pad) if pad is not None else 0,
                                  max_batch_size=self.config.max_batch_size)

    def _collect(self, policy: Policy, task_ids: list[str], sampling: SamplingParams,
                 max_turn: int, seed: int) -> list[Episode]:
        # GRPO groups: copies of one task share an env seed when every task appears equally
        # often in this call (the usual case); otherwise each prompt is its own group.
        unique = list(dict.fromkeys(task_ids))
        counts = {t: task_ids.count(t) for t in unique}
        grouped = len(set(counts.values())) == 1
        group_size = counts[unique[0]] if grouped else 1
        order = unique if grouped else task_ids
        cfg = RolloutConfig(
            env_id=self.config.env_id, env_kwargs=dict(self.config.env_kwargs),
            num_groups=len(order), group_size=group_size, task_ids=tuple(order),
            concurrency=self.config.concurrency, max_batch_size=self.config.max_batch_size,
            max_tokens=max_turn, sampling=sampling, seed=seed,
            episode_timeout_s=self.config.episode_timeout_s, progress=False)
        collected = RolloutCollector(policy, cfg, env_factory=self.env_factory).collect()
        if not grouped:
            return collected
        pending: dict[str, list[Episode]] = {t: [] for t in unique}
        for ep in collected:
            pending[order[ep.group_id]].append(ep)
        return [pending[t].pop(0) for t in task_ids]

    def _task_ids(self, prompts: Sequence[Any]) -> list[str]:
        if not prompts:
            raise TRLAdapterError("EnvRollout got no prompts; the train dataset is empty.")
        ids = []
        for p in prompts:
            if not isinstance(p, str):
                raise TRLAdapterError(
                    f"EnvRollout prompts must be task ids (str), got {type(p).__name__}: "
                    f"{str(p)[:80]!r}; build the train dataset with task_dataset(env_id, n).")
            ids.append(p)
        if self.config.check_task_ids:
            unknown = [t for t in dict.fromkeys(ids) if t not in self._known_ids]
            for t in unknown:
                try:
                    self._probe_env().task_source.get(t)
                except Exception as e:  # sources raise their own error types
                    raise TRLAdapterError(
                        f"prompt {t[:80]!r} is not a task id of env {self.config.env_id!r} "
                        f"({type(e).__name__}: {e}); build the train dataset with "
                        f"task_dataset({self.config.env_id!r}, n), whose prompts are task ids."
                    ) from e
                self._known_ids.add(t)
        return ids

    def _probe_env(self) -> Any:
        if self._probe is None:
            if self.env_factory is not None:
                self._probe = self.env_factory()
            else:
                import agent_envs

                self._probe = agent_envs.make(self.config.env_id, **dict(self.config.env_kwargs))
        return self._probe

    def close(self) -> None:
        """Close the env kept for checking task ids. Idempotent."""
        if self._probe is not None:
            self._probe.close()
            self._probe = None


# -- a harmony tokenizer for transformers -------------------------------------------------------


class HarmonyTokenizer(PreTrainedTokenizer):
    """A ``transformers`` tokenizer backed by openai-harmony's o200k_harmony encoding.

    For ``GRPOTrainer(processing_class=...)`` when no gpt-oss tokenizer can be
    loaded (offline machines, tiny test models); with a hub connection,
    ``AutoTokenizer.from_pretrained("openai/gpt-oss-20b")`` works as well.
    Encoding and decoding are harmony's (special tokens allowed). Token
    *strings* are opaque keys: a special token is its name (``<|return|>``),
    any other token ``<|t:ID|>``; text comes from the ids, never from joining
    token strings. ``pad_token`` is ``<|endoftext|>`` and ``eos_token``
    ``<|return|>``, as in gpt-oss.
    """

    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def __init__(self, **kwargs: Any) -> None:
        from agent_envs.harmony import get_codec

        self._codec = get_codec()
        kwargs.setdefault("pad_token", "<|endoftext|>")
        kwargs.setdefault("eos_token", "<|return|>")
        kwargs.setdefault("bos_token", "<|startoftext|>")
        kwargs.setdefault("padding_side", "left")
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return _HARMONY_VOCAB_SIZE

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id for all 201088 ids."""
        return {self._convert_id_to_token(i): i for i in range(_HARMONY_VOCAB_SIZE)}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [self._convert_id_to_token(i) for i in self._codec.encode(text)]

    def _convert_token_to_id(self, token: str) -> int:
        if token.startswith("<|t:") and token.endswith("|>"):
            return int(token[4:-2])
        ids = self._codec.encoding.encode(token, allowed_special="all")
        if len(ids) == 1:
            return int(ids[0])
        raise KeyError(f"{token!r} is not a harmony token")

    def _convert_id_to_token(self, index: int) -> str:
        index = int(index)
        if index >= _FIRST_SPECIAL_ID:
            return self._codec.decode([index])
        return f"<|t:{index}|>"

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._codec.decode([self._convert_token_to_id(t) for t in tokens])

    def _decode(self, token_ids: int | list[int], skip_special_tokens: bool = False,
                clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str:
        ids = [int(token_ids)] if isinstance(token_ids, int) else [int(t) for t in token_ids]
        if skip_special_tokens:
            ids = [t for t in ids if t < _FIRST_SPECIAL_ID]
        return self._codec.decode(ids)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None
                        ) -> tuple[str, ...]:
        """Nothing to write: the vocabulary is openai-harmony's (``$TIKTOKEN_ENCODINGS_BASE``)."""
        return ()
