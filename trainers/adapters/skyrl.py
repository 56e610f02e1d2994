"""Train on agent_envs environments with SkyRL (``skyrl`` 0.3, its ``skyrl.train`` trainer).

SkyRL's own generator (``SkyRLGymGenerator``) passes decoded text to ``env.step`` and
re-tokenizes the chat history, which is not drift-free for harmony, and its gpt-oss
example is single-turn. SkyRL's token-level extension point is
``skyrl.train.generators.base.GeneratorInterface``: ``generate(GeneratorInput)`` returns a
``GeneratorOutput`` of rows (``prompt_token_ids``, ``response_ids``, ``loss_masks``,
``rollout_logprobs``, ``rewards``, ...), one per trajectory, or one per *step* with
``generator.step_wise_trajectories=true`` (then ``is_last_step`` and ``trajectory_ids``
say which rows belong together). This module provides:

- :class:`AgentEnvsGenerator`: that generator. Each input row is one episode of an
  agent_envs env (``env_classes[i]`` is the env id, ``env_extras[i]["task_id"]`` the
  task; the chat ``prompts`` are ignored: the env renders the harmony context). Rows
  with the same ``TrajectoryID.instance_id`` form a GRPO group: same env seed, same
  task. Episodes run in our :class:`~agent_envs.rollout.RolloutCollector` and become one
  row per :class:`~agent_envs.rollout.Segment`: the segment's prompt, its completion
  stream (sampled turns and env tokens interleaved, exactly as the env produced them),
  its loss mask (0 on env tokens) and the sampler's log-probs (0.0 on env tokens).
- :class:`SkyRLEnginePolicy`: our ``Policy`` over SkyRL's inference engine client
  (``InferenceEngineInterface.generate`` with ``prompt_token_ids``; in SkyRL 0.3 that is
  ``RemoteInferenceClient``, which posts token ids to vLLM's ``/inference/v1/generate``),
  so sampling is token in, token out. Any of our policies can be used instead.
- :class:`AgentEnvsConfig` / :data:`AgentEnvsTrainConfig`: the adapter's settings as a
  ``generator.agent_envs`` section of SkyRL's own typed config (``make_config``), and
  :func:`load_config` to read a YAML file plus ``key=value`` overrides with it.
- :func:`write_task_dataset`: a SkyRL prompt dataset (JSONL) of task ids.
- ``python -m trainers.adapters.skyrl train CONFIG [key=value ...]``: SkyRL's PPO/GRPO
  entrypoint (``BasePPOExp``) with this generator; ``... dataset`` writes a dataset.

Rewards and failures:

- ``rewards`` are sequence-level floats (SkyRL puts each on the row's last token): the
  episode's reward on its last row, 0.0 on earlier rows. In step-wise mode SkyRL
  computes the advantage from the last row of each trajectory and broadcasts it to
  the trajectory's other rows, so every segment is trained with the episode outcome.
- An infra-flagged episode (sandbox crash, policy/engine error, wall-time limit) must
  not teach reward 0, and SkyRL cannot drop a row (its validator wants at least one
  row per prompt). So every trajectory of a group with an infra-flagged episode is
  replaced by one placeholder row (one masked ``<|return|>`` token, reward 0.0,
  ``stop_reason="infra_error"``): the whole group adds no gradient, and the healthy
  episodes of the group do not get an advantage computed against a fake 0.
- A setup mistake is not an infra error: it would fail every request, mask every group
  and leave a run training on nothing (visible only as ``agent_envs/masked_frac=1``). So
  an engine that returns no (or too few) log-probs, a malformed engine output, a request
  the client refuses (``ValueError``/``TypeError``, e.g. no LoRA model name) or an
  answer without vLLM's fields (``KeyError``/``IndexError``), an HTTP
  401/403/404/405/422, or an HTTP 400 for every request of a call raises
  :class:`SkyRLAdapterError` (what, the value, the fix) once the batch's episodes have
  finished. Transient errors (connection loss, HTTP 5xx, timeouts, an aborted request, an
  HTTP 400 for some requests only, e.g. one over-long prompt) keep masking their groups.
- SkyRL's ``zero_variance_filter`` (sequence-level rewards) looks at every row: with
  multi-segment episodes in step-wise mode it also sees the 0.0 of earlier rows, so a group
  whose episodes all scored the same is not filtered. Leave it off there, or keep
  ``answer_retries=0`` (one segment per episode, the python-tool default).
- Without ``step_wise_trajectories`` SkyRL wants exactly one row per trajectory: an
  episode with several segments (an env that re-renders the prompt, e.g.
  ``answer_retries > 0``) raises :class:`SkyRLAdapterError` then.

Seeds: a batch's collector seed is ``derive_seed(config.seed, "skyrl", phase,
global_step)`` (from ``batch_metadata``); group ``instance_id``'s env seed and the
sampling seed of its ``i``-th episode derive from it as in ``RolloutCollector`` (with
``group_keys`` = the instance ids), and reach the engine as vLLM's per-request ``seed``.

Limits: SkyRL's ``max_generate_length`` caps each *turn* (the env's ``max_tokens`` caps
the episode); ``generator.max_turns`` is not used (the env's ``max_turns`` is);
``sampling_params.stop`` strings are dropped (harmony stops on the token ids
``<|return|>``/``<|call|>``).

Importing this module imports SkyRL (and torch); it imports nothing from us that needs
the ``[train]`` extra's newer transformers/peft (SkyRL 0.3 pins ``transformers<=5.8``
and ``peft==0.18.1``), so it runs in its own venv: ``bash scripts/setup_skyrl.sh``.
"""

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _import_skyrl() -> None:
    """Import SkyRL's ``skyrl.tinker.types`` so that it works on Python 3.11.

    That module (imported by every ``skyrl.backends`` import, hence by
    ``skyrl.train.generators.base``) declares a pydantic model field of a
    ``typing.TypedDict``, which pydantic refuses before Python 3.12 ("Please use
    typing_extensions.TypedDict"). It is imported once here with ``typing.TypedDict``
    pointing at ``typing_extensions.TypedDict`` (the drop-in pydantic asks for), and
    ``typing`` is restored at once; on Python >= 3.12 nothing is patched.
    """
    if sys.version_info >= (3, 12) or "skyrl.tinker.types" in sys.modules:
        return
    import typing

    import typing_extensions

    original = typing.TypedDict
    typing.TypedDict = typing_extensions.TypedDict  # type: ignore[misc]
    try:
        import skyrl.tinker.types  # noqa: F401
    finally:
        typing.TypedDict = original  # type: ignore[misc]


_import_skyrl()

from skyrl.backends.skyrl_train.inference_servers.base import (
    InferenceEngineInput,
    InferenceEngineInterface,
)
from skyrl.train.config import BaseConfig, GeneratorConfig, make_config
from skyrl.train.generators.base import (
    GeneratorInput,
    GeneratorInterface,
    GeneratorOutput,
    TrajectoryID,
)

from agent_envs.harmony import RETURN
from agent_envs.rollout import RolloutCollector, RolloutConfig, derive_seed, draw_tasks
from agent_envs.rollout.episode import Episode, Segment
from agent_envs.rollout.policy import Policy, Sample, SampleRequest, SamplingParams
from trainers.errors import TrainersError

__all__ = [
    "AgentEnvsConfig", "AgentEnvsGenerator", "AgentEnvsGeneratorConfig", "AgentEnvsTrainConfig",
    "SkyRLAdapterError", "SkyRLEnginePolicy", "batch_seed", "episodes_to_skyrl", "load_config",
    "main", "write_task_dataset",
]

#: ``<|return|>``: the one (masked) token of a placeholder row.
_FILLER_TOKEN = RETURN
#: ``stop_reasons`` entry of a placeholder row.
INFRA_STOP_REASON = "infra_error"


class SkyRLAdapterError(TrainersError, ValueError):
    """The SkyRL adapter was used in a way it cannot serve (the message gives the value and the fix)."""


# -- config ---------------------------------------------------------------------------------------


@dataclass
class AgentEnvsConfig(BaseConfig):
    """The adapter's settings: ``generator.agent_envs`` in a SkyRL config.

    Attributes:
        env_kwargs: Passed to ``agent_envs.make`` for every env (budgets, sandbox, task source).
        concurrency: Most episodes running at once per env id and group size.
        max_batch_size: Most requests per policy call (the engine client sends each
            request on its own anyway; this bounds the collector's batches).
        max_turn_tokens: Cap on one sampled turn; None = SkyRL's ``max_generate_length``.
        episode_timeout_s: Wall-time limit of one episode (None = none); an episode past
            it is infra-flagged (and its group masked).
        seed: Base seed (see the module docstring for what derives from it).
        seeded_sampling: Send each request's derived seed to the engine (vLLM ``seed``),
            so a batch is reproducible given the weights.
    """

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 64
    max_batch_size: int = 64
    max_turn_tokens: int | None = None
    episode_timeout_s: float | None = 900.0
    seed: int = 0
    seeded_sampling: bool = True

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_batch_size"):
            if int(getattr(self, name)) < 1:
                raise SkyRLAdapterError(f"generator.agent_envs.{name} must be >= 1, "
                                        f"got {getattr(self, name)!r}.")
        if self.max_turn_tokens is not None and int(self.max_turn_tokens) < 1:
            raise SkyRLAdapterError(
                f"generator.agent_envs.max_turn_tokens must be >= 1 or null (use SkyRL's "
                f"generator.sampling_params.max_generate_length), got {self.max_turn_tokens!r}.")
        if self.episode_timeout_s is not None and not float(self.episode_timeout_s) > 0:
            raise SkyRLAdapterError(f"generator.agent_envs.episode_timeout_s must be > 0 or null, "
                                    f"got {self.episode_timeout_s!r}.")
        if not isinstance(self.env_kwargs, Mapping):
            raise SkyRLAdapterError(f"generator.agent_envs.env_kwargs must be a mapping, "
                                    f"got {self.env_kwargs!r}.")


@dataclass
class AgentEnvsGeneratorConfig(GeneratorConfig):
    """SkyRL's ``GeneratorConfig`` with an ``agent_envs`` section."""

    agent_envs: AgentEnvsConfig = field(default_factory=AgentEnvsConfig)


#: SkyRL's ``SkyRLTrainConfig`` whose ``generator`` is an ``AgentEnvsGeneratorConfig``.
AgentEnvsTrainConfig = make_config(generator_cls=AgentEnvsGeneratorConfig)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Any:
    """Read a SkyRL YAML config (with ``generator.agent_envs``) plus ``key=value`` overrides.

    SkyRL builds its configs from ``key=value`` lists (``SkyRLTrainConfig.from_cli_overrides``);
    this merges the YAML file under them with OmegaConf and builds the typed config with
    SkyRL's own ``from_dict_config`` (which rejects unknown keys).

    Raises:
        SkyRLAdapterError: The file is missing or is not a YAML mapping.
        ValueError: SkyRL rejects a key or value.
    """
    from omegaconf import DictConfig, OmegaConf

    path = Path(path)
    if not path.is_file():
        raise SkyRLAdapterError(f"SkyRL config {str(path)!r} does not exist; see configs/skyrl/ "
                                "for an example.")
    base = OmegaConf.load(path)
    if not isinstance(base, DictConfig):
        raise SkyRLAdapterError(f"SkyRL config {str(path)!r} must be a YAML mapping of sections "
                                "(data, trainer, generator, environment).")
    bad = [o for o in overrides if "=" not in o or o.startswith("+")]
    if bad:
        raise SkyRLAdapterError(f"config overrides must look like 'section.key=value' (no '+'), "
                                f"got {bad!r}.")
    merged = OmegaConf.merge(base, OmegaConf.from_cli(list(overrides)))
    return AgentEnvsTrainConfig.from_dict_config(merged)


def batch_seed(base_seed: int, phase: str, global_step: int) -> int:
    """The ``RolloutConfig.seed`` of one ``generate`` call (see the module docstring)."""
    return derive_seed(base_seed, "skyrl", str(phase), int(global_step))


# -- the engine client as a Policy ----------------------------------------------------------------


class SkyRLEnginePolicy(Policy):
    """Our ``Policy`` over SkyRL's inference engine client, token in, token out.

    Each request is one ``client.generate`` call with ``prompt_token_ids`` (all of a
    batch's requests run concurrently; a failed one fails only its own episode). The
    vLLM sampling parameters are SkyRL's (``GeneratorInput["sampling_params"]``, e.g.
    ``temperature``, ``top_p``, ``min_p``, ``repetition_penalty``) with the request's
    ``max_tokens``, harmony's stop token ids, ``logprobs`` (at least 0: the sampled
    token's) and, when ``seeded``, the request's derived ``seed``. String ``stop``s are
    dropped. The session id is the episode id, so a session-aware router keeps an
    episode's turns on one engine (prefix cache).

    A failed request fails its own episode. When the failure is a setup mistake that
    every request would hit (see the module docstring), its message is also kept in
    :attr:`config_error`, which :class:`AgentEnvsGenerator` raises once the batch is done.

    Args:
        client: A SkyRL ``InferenceEngineInterface`` (``RemoteInferenceClient``).
        sampling_params: SkyRL's vLLM sampling dict; None = from each request's params.
        model: The name the engine knows the policy by (``resolve_policy_model_name``).
        seeded: Send each request's seed.
        session_prefix: Prepended to episode ids to make session ids.

    Attributes:
        config_error: The first setup mistake seen (None: none), with its fix.
        ok_requests: Requests answered with tokens and log-probs.
        rejected: ``(count, first message)`` of requests answered with HTTP 400.
    """

    wants_context = True  # for the episode id (session routing); the task is not used

    def __init__(self, client: Any, *, sampling_params: Mapping[str, Any] | None = None,
                 model: str | None = None, seeded: bool = True, session_prefix: str = "") -> None:
        if not callable(getattr(client, "generate", None)):
            raise SkyRLAdapterError(f"SkyRLEnginePolicy needs a SkyRL inference engine client "
                                    f"(InferenceEngineInterface), got {type(client).__name__}.")
        self.client = client
        self.sampling_params = dict(sampling_params or {})
        self.model = model
        self.seeded = seeded
        self.session_prefix = session_prefix
        self.policy_id = str(model or getattr(client, "model_name", None) or "skyrl-engine")
        self.version = str(getattr(client, "weight_version", 0))
        self.config_error: str | None = None
        self.ok_requests = 0
        self.rejected: tuple[int, str | None] = (0, None)

    def engine_params(self, request: SampleRequest) -> dict[str, Any]:
        """The vLLM sampling dict sent for ``request``."""
        p = dict(self.sampling_params)
        if not p:
            rp = request.params
            p = {"temperature": rp.temperature, "top_p": rp.top_p, "top_k": rp.top_k}
        p.pop("stop", None)
        p.pop("n", None)
        p["max_tokens"] = int(request.max_tokens)
        p["stop_token_ids"] = [int(t) for t in request.stop_token_ids]
        p["logprobs"] = max(0, int(p.get("logprobs") or 0))
        p["skip_special_tokens"] = False
        if self.seeded and request.params.seed is not None:
            p["seed"] = int(request.params.seed)
        else:
            p.pop("seed", None)
        return p

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample every request concurrently (see ``Policy.asample``)."""
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: SampleRequest) -> Sample:
        ctx = request.context
        session = f"{self.session_prefix}{ctx.episode_id}" if ctx is not None else None
        batch = InferenceEngineInput(
            prompts=None, prompt_token_ids=[[int(t) for t in request.prompt]],
            sampling_params=self.engine_params(request),
            session_ids=[session] if session else None, mm_features=None, cache_salt=None)
        try:
            out = await self.client.generate(batch, model=self.model)
        except Exception as e:  # noqa: BLE001 - one failed request fails its own episode only
            msg = f"SkyRL inference engine call failed: {type(e).__name__}: {e}"
            kind = _engine_error_kind(e)
            if kind == "config":
                self._config(f"{msg} (model={self.model!r}); this error recurs on every request: "
                             "fix the engine/client setup (server URL, served model or LoRA "
                             "name, generator.sampling_params) before training")
            elif kind == "rejected":
                count, first = self.rejected
                self.rejected = (count + 1, first or msg)
            return Sample.failed(msg)
        try:
            ids = [int(t) for t in out["response_ids"][0]]
            reason = out["stop_reasons"][0]
            lps = (out.get("response_logprobs") or [None])[0]
        except (KeyError, IndexError, TypeError) as e:
            msg = f"SkyRL inference engine returned a malformed output ({e!r})"
            self._config(f"{msg}: {type(out).__name__} {str(out)[:200]}; the adapter needs "
                         "InferenceEngineOutput's response_ids, stop_reasons and "
                         "response_logprobs (use SkyRL's RemoteInferenceClient against vLLM)")
            return Sample.failed(msg)
        if reason == "abort":
            return Sample.failed("the inference engine aborted the request (paused with "
                                 "mode=abort?)")
        if lps is None or len(lps) != len(ids):
            got = "no log-probs" if lps is None else f"{len(lps)} log-probs"
            msg = f"the inference engine returned {len(ids)} tokens and {got}"
            self._config(
                f"{msg} for a request with sampling_params.logprobs="
                f"{batch['sampling_params']['logprobs']!r}; the adapter needs the sampler's "
                "log-prob of every sampled token (the behaviour log-probs of rollout "
                "correction). Fix: set generator.sampling_params.logprobs: 0 (the sampled "
                "token's), serve vLLM with log-probs enabled "
                "(generator.inference_engine.engine_init_kwargs: {logprobs_mode: "
                "processed_logprobs}) and use a router/proxy that passes each choice's "
                "'logprobs' on")
            return Sample.failed(msg)
        self.ok_requests += 1
        finish = "stop" if ids and ids[-1] in request.stop_token_ids else "length"
        return Sample(token_ids=ids, logprobs=[float(x) for x in lps], finish_reason=finish)

    def _config(self, message: str) -> None:
        if self.config_error is None:
            self.config_error = message

    def setup_error(self) -> str | None:
        """The setup mistake of the requests so far, or None (call when a batch is done).

        That is :attr:`config_error`, or, when no request was answered and some were
        rejected with HTTP 400, that rejection (a bad sampling parameter, not one prompt).
        """
        if self.config_error is not None:
            return self.config_error
        count, first = self.rejected
        if count and not self.ok_requests:
            return (f"all {count} requests to the inference engine were rejected with HTTP 400 "
                    f"and none was answered (first: {first}); sampling params sent: "
                    f"{self.sampling_params!r}. Fix generator.sampling_params or the engine "
                    "setup (max_model_len vs. the env's max_tokens) before training")
        return None


#: HTTP statuses every request would get again: auth, unknown model or route, bad schema.
_CONFIG_STATUSES = frozenset({401, 403, 404, 405, 422})


def _engine_error_kind(e: BaseException) -> str:
    """``"config"`` (recurs on every request), ``"rejected"`` (HTTP 400) or ``"transient"``."""
    import aiohttp

    if isinstance(e, aiohttp.ClientResponseError):
        if e.status in _CONFIG_STATUSES:
            return "config"
        return "rejected" if e.status == 400 else "transient"
    if isinstance(e, json.JSONDecodeError):  # a proxy's non-JSON error page, retried by SkyRL
        return "transient"
    if isinstance(e, (ValueError, TypeError, KeyError, IndexError)):
        return "config"  # the client refused the request, or the answer lacks vLLM's fields
    return "transient"


def _our_sampling(params: Mapping[str, Any]) -> SamplingParams:
    """Our ``SamplingParams`` from SkyRL's vLLM dict (temperature 0, greedy, becomes 1e-4)."""
    temperature = float(params.get("temperature", 1.0))
    top_k = int(params.get("top_k", -1) or -1)
    return SamplingParams(temperature=temperature if temperature > 0 else 1e-4,
                          top_p=float(params.get("top_p", 1.0) or 1.0),
                          top_k=top_k if top_k > 0 else -1)


# -- episodes -> GeneratorOutput ------------------------------------------------------------------


_ROW_KEYS = ("prompt_token_ids", "response_ids", "rewards", "loss_masks", "rollout_logprobs",
             "stop_reasons", "trajectory_ids", "is_last_step", "env_metrics",
             "trajectory_generation_times")


def _segment_stop_reason(ep: Episode, seg_index: int) -> str:
    turns = [t for t in ep.turns if t.segment == seg_index]
    return turns[-1].finish_reason if turns else "stop"


def episodes_to_skyrl(episodes: Sequence[Episode], trajectory_ids: Sequence[TrajectoryID], *,
                      step_wise: bool = True,
                      masked: Sequence[bool] | None = None) -> GeneratorOutput:
    """Turn episodes (one per trajectory, in input order) into a ``GeneratorOutput``.

    Args:
        episodes: The episodes, ``episodes[i]`` for ``trajectory_ids[i]``.
        trajectory_ids: SkyRL's trajectory ids.
        step_wise: One row per segment (SkyRL's ``step_wise_trajectories``); else one
            row per episode (an episode with several segments raises).
        masked: Per episode, whether to emit a placeholder instead (default: its
            ``infra`` flag). ``AgentEnvsGenerator`` masks whole groups.

    Returns:
        A ``GeneratorOutput``; ``rollout_metrics`` summarises the batch.

    Raises:
        SkyRLAdapterError: Lengths differ, or an episode has several segments and
            ``step_wise`` is False.
    """
    if len(episodes) != len(trajectory_ids):
        raise SkyRLAdapterError(f"episodes_to_skyrl got {len(episodes)} episodes for "
                                f"{len(trajectory_ids)} trajectory ids; give one per trajectory.")
    masked = [ep.infra for ep in episodes] if masked is None else list(masked)
    out: dict[str, list[Any]] = {k: [] for k in _ROW_KEYS}

    def row(prompt: list[int], completion: list[int], mask: list[int], lps: list[float],
            reward: float, stop: str, tid: TrajectoryID, last: bool, metrics: dict[str, Any]
            ) -> None:
        out["prompt_token_ids"].append(prompt)
        out["response_ids"].append(completion)
        out["loss_masks"].append(mask)
        out["rollout_logprobs"].append(lps)
        out["rewards"].append(float(reward))
        out["stop_reasons"].append(stop)
        out["trajectory_ids"].append(tid)
        out["is_last_step"].append(last)
        out["env_metrics"].append(metrics)
        # One entry per row, the trajectory's time on each of its rows (as SkyRL's own
        # step-wise generator does: its step-wise eval filters every list by is_last_step).
        out["trajectory_generation_times"].append(float(metrics["episode_s"]))

    for ep, tid, mask_it in zip(episodes, trajectory_ids, masked):
        metrics = {"env_id": ep.env_id, "task_id": ep.task_id, "episode_id": ep.episode_id,
                   "reward": float(ep.reward), "solved": bool(ep.solved),
                   "turns": len(ep.turns), "tool_calls": sum(1 for t in ep.turns if t.tool_outcome),
                   "segments": len(ep.segments), "infra_error": ep.infra_error,
                   "masked": bool(mask_it), "episode_s": float(ep.total_s)}
        segments: list[tuple[int, Segment]] = [(k, s) for k, s in enumerate(ep.segments)
                                               if s.completion]
        if mask_it or not segments:
            row([_FILLER_TOKEN], [_FILLER_TOKEN], [0], [0.0], 0.0, INFRA_STOP_REASON, tid, True,
                metrics | {"masked": True})
            continue
        if not step_wise and len(segments) > 1:
            raise SkyRLAdapterError(
                f"episode {ep.episode_id} (task {ep.task_id!r}) has {len(segments)} segments "
                "(the env re-rendered its prompt); without step-wise trajectories SkyRL takes "
                "one row per trajectory. Set generator.step_wise_trajectories=true, or the env's "
                "answer_retries=0.")
        for n, (k, seg) in enumerate(segments):
            last = n == len(segments) - 1
            row(list(seg.prompt), list(seg.completion), [int(m) for m in seg.loss_mask],
                [float(x) for x in seg.logprobs], ep.reward if last else 0.0,
                _segment_stop_reason(ep, k), tid, last, metrics)
    result: dict[str, Any] = dict(out)
    result["rollout_metrics"] = _rollout_metrics(episodes, masked)
    result["rollout_expert_indices"] = None
    result["pixel_values"] = None
    result["image_grid_thw"] = None
    if not step_wise:
        result["is_last_step"] = None
    return result  # type: ignore[return-value]


def _rollout_metrics(episodes: Sequence[Episode], masked: Sequence[bool]) -> dict[str, float]:
    ok = [e for e, m in zip(episodes, masked) if not m]
    n = max(len(episodes), 1)

    def mean(xs: Sequence[float]) -> float:
        return float(sum(xs) / len(xs)) if xs else math.nan

    sampled = sum(sum(s.loss_mask) for e in ok for s in e.segments)
    total = sum(len(s.completion) for e in ok for s in e.segments)
    return {
        "agent_envs/episodes": float(len(episodes)),
        "agent_envs/infra_frac": sum(e.infra for e in episodes) / n,
        "agent_envs/masked_frac": sum(bool(m) for m in masked) / n,
        "agent_envs/mean_reward": mean([e.reward for e in ok]),
        "agent_envs/solved_frac": mean([float(e.solved) for e in ok]),
        "agent_envs/turns": mean([float(len(e.turns)) for e in ok]),
        "agent_envs/tool_calls": mean([float(sum(1 for t in e.turns if t.tool_outcome))
                                       for e in ok]),
        "agent_envs/segments": mean([float(len(e.segments)) for e in ok]),
        "agent_envs/sampled_tokens": float(sampled),
        "agent_envs/env_tokens": float(total - sampled),
        "agent_envs/episode_s": mean([e.total_s for e in ok]),
    }


# -- the generator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    instance_id: str
    rows: list[int]
    env_id: str
    task_id: str | None


class AgentEnvsGenerator(GeneratorInterface):
    """SkyRL generator that runs agent_envs episodes token in, token out.

    Args:
        sampler: SkyRL's inference engine client (wrapped in :class:`SkyRLEnginePolicy`
            per call, with that call's sampling params), or any of our ``Policy``s.
        config: The adapter settings (``generator.agent_envs``).
        step_wise: One row per segment (set from SkyRL's
            ``generator.step_wise_trajectories``); else one row per episode.
        model_name: Passed as ``model`` to the engine (LoRA adapter name or base model).
        default_env_id: Env id for rows whose ``env_classes`` entry is None.
        env_factory: ``env_factory(env_id)`` makes one env (default: ``agent_envs.make``
            with ``config.env_kwargs``); for wrapping or injecting envs.

    Attributes:
        last_episodes: The episodes of the last ``generate`` call, one per input row.
        last_seed: The collector seed of the last call (``batch_seed``).

    Example:
        >>> gen = AgentEnvsGenerator(inference_engine_client,
        ...                          AgentEnvsConfig(env_kwargs={"max_turns": 8}))
        >>> out = await gen.generate(generator_input)  # rows for SkyRL's trainer
    """

    def __init__(self, sampler: Any, config: AgentEnvsConfig | None = None, *,
                 step_wise: bool = True, model_name: str | None = None,
                 default_env_id: str | None = None,
                 env_factory: Callable[[str], Any] | None = None) -> None:
        if not isinstance(sampler, (Policy, InferenceEngineInterface)) and not callable(
                getattr(sampler, "generate", None)):
            raise SkyRLAdapterError(
                f"AgentEnvsGenerator needs a SkyRL inference engine client or an agent_envs "
                f"Policy, got {type(sampler).__name__}.")
        self.sampler = sampler
        self.config = config or AgentEnvsConfig()
        self.step_wise = bool(step_wise)
        self.model_name = model_name
        self.default_env_id = default_env_id
        self.env_factory = env_factory
        self.last_episodes: list[Episode] = []
        self.last_seed: int | None = None
        self._calls = 0
        self._checked_envs: dict[str, str] = {}

    @classmethod
    def from_skyrl_config(cls, cfg: Any, inference_engine_client: Any) -> "AgentEnvsGenerator":
        """The generator ``BasePPOExp.get_generator`` returns for an ``AgentEnvsTrainConfig``."""
        from skyrl.backends.skyrl_train.inference_servers.utils import resolve_policy_model_name

        agent_cfg = getattr(cfg.generator, "agent_envs", None)
        if agent_cfg is None:
            raise SkyRLAdapterError("the SkyRL config has no generator.agent_envs section; build "
                                    "it with trainers.adapters.skyrl.load_config / "
                                    "AgentEnvsTrainConfig.")
        return cls(inference_engine_client, agent_cfg,
                   step_wise=bool(cfg.generator.step_wise_trajectories),
                   model_name=resolve_policy_model_name(cfg),
                   default_env_id=cfg.environment.env_class)

    def _env_id(self, env_class: Any) -> str:
        raw = env_class if env_class is not None else self.default_env_id
        if raw is None:
            raise SkyRLAdapterError("a GeneratorInput row has no env class; set "
                                    "environment.env_class (e.g. python-tool) or the dataset's "
                                    "env_class column.")
        raw = str(raw)
        if raw not in self._checked_envs:
            from agent_envs.errors import UnknownEnvError
            from agent_envs.registry import spec

            try:
                self._checked_envs[raw] = spec(raw).id
            except UnknownEnvError as e:
                raise SkyRLAdapterError(
                    f"env class {raw!r} is not an agent_envs environment ({e}). With this "
                    "generator, environment.env_class (and the dataset's env_class column) name "
                    "agent_envs ids such as 'python-tool', not SkyRL-Gym envs.") from e
        return self._checked_envs[raw]

    def _groups(self, batch: GeneratorInput) -> tuple[list[_Group], list[TrajectoryID]]:
        n = len(batch["prompts"])
        env_classes = batch.get("env_classes") or [None] * n
        extras = batch.get("env_extras") or [{}] * n
        tids = batch.get("trajectory_ids") or [TrajectoryID(instance_id=f"row{i}", repetition_id=0)
                                               for i in range(n)]
        for name, col in (("env_classes", env_classes), ("env_extras", extras),
                          ("trajectory_ids", tids)):
            if len(col) != n:
                raise SkyRLAdapterError(f"GeneratorInput has {n} prompts but {len(col)} {name}; "
                                        "every column needs one entry per prompt.")
        rows: dict[str, list[int]] = {}
        for i, tid in enumerate(tids):
            rows.setdefault(str(tid.instance_id), []).append(i)
        groups = []
        for iid, idx in rows.items():
            envs = {self._env_id(env_classes[i]) for i in idx}
            tasks = {None if (extras[i] or {}).get("task_id") is None
                     else str(extras[i]["task_id"]) for i in idx}
            if len(envs) > 1 or len(tasks) > 1:
                raise SkyRLAdapterError(
                    f"trajectories of instance {iid!r} disagree on env {sorted(envs)} or task "
                    f"{sorted(map(str, tasks))}; a group (same instance_id) is one task of one env.")
            groups.append(_Group(iid, idx, envs.pop(), tasks.pop()))
        return groups, list(tids)

    def _policy(self, sampling: Mapping[str, Any], seed: int) -> Policy:
        if isinstance(self.sampler, Policy):
            return self.sampler
        return SkyRLEnginePolicy(self.sampler, sampling_params=sampling, model=self.model_name,
                                 seeded=self.config.seeded_sampling, session_prefix=f"{seed}-")

    async def generate(self, input_batch: GeneratorInput) -> GeneratorOutput:
        """Run one episode per input row and return SkyRL's rows (see the module docstring).

        Raises:
            SkyRLAdapterError: No prompts, an unknown env id, inconsistent groups, a
                multi-segment episode without step-wise mode, or (after the batch's
                episodes finish) an engine setup mistake such as an engine that returns
                no log-probs (see the module docstring).
        """
        n = len(input_batch.get("prompts") or [])
        if n == 0:
            raise SkyRLAdapterError("GeneratorInput has no prompts; nothing to generate.")
        groups, tids = self._groups(input_batch)
        sampling = dict(input_batch.get("sampling_params") or {})
        meta = input_batch.get("batch_metadata")
        # SkyRL's eval-only runs pass global_step None; then the call count stands in.
        step = self._calls if meta is None or meta.global_step is None else int(meta.global_step)
        phase = str(meta.training_phase) if meta is not None else "train"
        self._calls += 1
        seed = batch_seed(self.config.seed, phase, step)
        policy = self._policy(sampling, seed)
        cfg = self.config
        max_tokens = int(cfg.max_turn_tokens or sampling.get("max_tokens") or 4096)

        parts: dict[tuple[str, int, bool], list[_Group]] = {}
        for g in groups:
            parts.setdefault((g.env_id, len(g.rows), g.task_id is not None), []).append(g)

        async def run(key: tuple[str, int, bool], gs: list[_Group]
                      ) -> tuple[list[_Group], list[Episode]]:
            env_id, size, has_task = key
            rcfg = RolloutConfig(
                env_id=env_id, env_kwargs=dict(cfg.env_kwargs), num_groups=len(gs),
                group_size=size, concurrency=cfg.concurrency, max_batch_size=cfg.max_batch_size,
                max_tokens=max_tokens, sampling=_our_sampling(sampling),
                episode_timeout_s=cfg.episode_timeout_s, seed=seed,
                task_ids=tuple(str(g.task_id) for g in gs) if has_task else None,
                group_keys=tuple(g.instance_id for g in gs), progress=False)
            factory = None
            if self.env_factory is not None:
                make = self.env_factory

                def factory() -> Any:
                    return make(env_id)
            eps = await RolloutCollector(policy, rcfg, env_factory=factory).acollect()
            return gs, eps

        t0 = time.perf_counter()
        results = await asyncio.gather(*(run(k, gs) for k, gs in parts.items()))
        by_row: list[Episode | None] = [None] * n
        for gs, eps in results:
            for ep in eps:
                by_row[gs[ep.group_id].rows[ep.index]] = ep
        episodes = [ep for ep in by_row if ep is not None]
        if len(episodes) != n:  # pragma: no cover - the collector returns every episode
            raise RuntimeError(f"the collector returned {len(episodes)} episodes for {n} rows")
        setup = getattr(policy, "setup_error", None)
        error = setup() if callable(setup) else getattr(policy, "config_error", None)
        if error is not None:
            raise SkyRLAdapterError(f"{error} (infra-flagged {sum(e.infra for e in episodes)} "
                                    f"of {n} episodes; a setup mistake fails every batch, so "
                                    "it is raised instead of masking groups).")
        failed = {g.instance_id for g in groups if any(episodes[r].infra for r in g.rows)}
        masked = [str(t.instance_id) in failed for t in tids]
        self.last_episodes, self.last_seed = episodes, seed
        out = episodes_to_skyrl(episodes, tids, step_wise=self.step_wise, masked=masked)
        metrics = out["rollout_metrics"] or {}
        metrics["agent_envs/masked_groups"] = float(len(failed))
        metrics["agent_envs/generate_s"] = time.perf_counter() - t0
        return out


# -- dataset --------------------------------------------------------------------------------------


def write_task_dataset(path: str | Path, env_id: str, num_tasks: int, *, seed: int = 0,
                       split: str = "train", env_kwargs: Mapping[str, Any] | None = None) -> Path:
    """Write a SkyRL prompt dataset (JSONL) of ``num_tasks`` tasks of ``env_id``.

    Each row has ``prompt`` (the task text as one user message: SkyRL filters rows by its
    chat-templated length and logs it; the env renders the real harmony context),
    ``env_class`` (the env id) and ``task_id`` (reaches the generator in ``env_extras``).
    Task ``i`` is ``env.task_source.sample(derive_seed(seed, "task", i), split)``.

    Raises:
        SkyRLAdapterError: ``num_tasks`` < 1 or an unknown env id.
    """
    if num_tasks < 1:
        raise SkyRLAdapterError(f"write_task_dataset num_tasks must be >= 1, got {num_tasks!r}.")
    from agent_envs.errors import UnknownEnvError

    try:
        tasks = draw_tasks(env_id, num_tasks, seed=seed, split=split, env_kwargs=env_kwargs)
    except UnknownEnvError as e:
        raise SkyRLAdapterError(f"write_task_dataset: {e}") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"prompt": [{"role": "user", "content": t.prompt}],
                                 "env_class": env_id, "task_id": t.id}) + "\n" for t in tasks)
    return path


# -- the SkyRL entrypoint -------------------------------------------------------------------------


def _ppo_exp_class() -> type:
    """``BasePPOExp`` whose generator is ``AgentEnvsGenerator`` (imported lazily: Ray, workers)."""
    from skyrl.train.entrypoints.main_base import BasePPOExp

    class AgentEnvsPPOExp(BasePPOExp):
        def get_generator(self, cfg: Any, tokenizer: Any, inference_engine_client: Any) -> Any:
            return AgentEnvsGenerator.from_skyrl_config(cfg, inference_engine_client)

    return AgentEnvsPPOExp


def _run_experiment(cfg: Any) -> None:
    _ppo_exp_class()(cfg).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.adapters.skyrl {train CONFIG [k=v ...] | dataset ...}``."""
    import argparse

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainers.adapters.skyrl")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="run SkyRL's PPO/GRPO trainer with AgentEnvsGenerator")
    tr.add_argument("config", help="SkyRL YAML config (see configs/skyrl/)")
    tr.add_argument("overrides", nargs="*", help="SkyRL key=value overrides")
    tr.add_argument("--check", action="store_true", help="parse and validate, then exit")
    ds = sub.add_parser("dataset", help="write a SkyRL prompt dataset (JSONL) of task ids")
    ds.add_argument("--env", required=True)
    ds.add_argument("--num", type=int, required=True)
    ds.add_argument("--out", required=True)
    ds.add_argument("--split", default="train", choices=["train", "test"])
    ds.add_argument("--seed", type=int, default=0)
    ns, extra = parser.parse_known_args(args)  # overrides may follow --check
    try:
        return _run_cli(ns, extra, parser)
    except SkyRLAdapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_cli(ns: Any, extra: list[str], parser: Any) -> int:
    if ns.cmd == "dataset" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if ns.cmd == "dataset":
        path = write_task_dataset(ns.out, ns.env, ns.num, seed=ns.seed, split=ns.split)
        print(f"wrote {ns.num} {ns.env} tasks ({ns.split}) to {path}")
        return 0
    cfg = load_config(ns.config, [*ns.overrides, *extra])
    from skyrl.train.utils import validate_cfg

    validate_cfg(cfg)
    AgentEnvsGenerator(_NoEngine(), cfg.generator.agent_envs)._env_id(cfg.environment.env_class)
    if ns.check:
        print(f"config ok: env {cfg.environment.env_class}, model "
              f"{cfg.trainer.policy.model.path}, step_wise="
              f"{cfg.generator.step_wise_trajectories}")
        return 0
    import ray
    from skyrl.train.utils.utils import initialize_ray

    # By module name (not __main__), so that Ray's workers import it rather than unpickle a copy.
    from trainers.adapters.skyrl import _run_experiment as run_experiment

    initialize_ray(cfg)
    ray.get(ray.remote(num_cpus=1)(run_experiment).remote(cfg))
    return 0


class _NoEngine:
    """Stands in for the engine client when only the env id is checked."""

    async def generate(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise RuntimeError("no inference engine")


if __name__ == "__main__":
    raise SystemExit(main())
