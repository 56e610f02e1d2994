"""Train on agent_envs environments with verl, through its token-level agent-loop interface.

verl (checked against 0.9.1) runs rollouts in ``AgentLoopWorker``s: for each dataset
row it instantiates the agent loop named by the row's ``agent_name`` and awaits
``run(sampling_params, **row) -> AgentLoopOutput``. The output carries token ids, not
text: ``prompt_ids``, ``response_ids`` (sampled and env tokens interleaved),
``response_mask`` (1 on sampled tokens), ``response_logprobs`` (the sampler's) and
``reward_score``; verl pads them into its batch (``prompts``, ``responses``,
``response_mask``, ``rollout_log_probs``, ``rm_scores`` at the last response token).

:class:`AgentEnvsAgentLoop`, registered as ``"agent_envs"``, runs one episode of any
registered env with our :class:`~agent_envs.rollout.RolloutCollector` (the same loop the
in-process trainers use), sampling through verl's ``server_manager.generate`` (token
ids in, token ids and processed log-probs out, harmony stop tokens ``<|return|>`` and
``<|call|>``, the env's remaining token budget as ``max_tokens``), and hands verl the
episode's exact tokens: nothing is rendered or re-tokenized on verl's side.

Where the episode comes from. Defaults come from the agent-loop YAML entry (keys of
:class:`VerlLoopConfig`); each row may override them in ``extra_info``: ``env_id``,
``env_kwargs`` (a dict or a JSON string), ``task_id`` and ``seed``. Rows from
:func:`task_rows` carry all four. The ``rollout.n`` copies of a row share its task
and env seed (a GRPO group) and differ in the server's sampling.

Policies:

- Infra-flagged episodes (``Episode.infra_error``: a sandbox crash, a server error,
  the wall-time limit) come back with ``response_mask`` all 0 and ``reward_score``
  0.0, so they add no gradient. verl has no "unscorable" reward: the 0.0 does enter
  the GRPO group mean of the other copies (``reward_extra_info["env_infra"]`` marks
  such rows so they can be counted).
- An episode with a segment break (``info["new_segment"]``, e.g. ``answer_retries >
  0``) cannot be one verl sample. ``multi_segment="last"`` (the default) trains on
  its last segment, the one whose final answer was judged; ``"error"`` raises.
- verl's batch has fixed widths: a segment's response (everything after its first
  prompt) stops at ``rollout.response_length``: each turn's ``max_tokens`` is capped
  by the room left, and the episode ends as truncated (``truncated_reason
  "response_length"``, reward 0) when none is left. Env tokens that overflow the last
  turn are cut off (``extra_fields["env_response_cut"]``). A segment prompt longer than
  ``rollout.prompt_length`` raises: cutting it would train on a context the sampler
  never saw.
- Sampling settings are verl's (``rollout.temperature`` / ``top_p`` / ``top_k``,
  greedy on validation); the server's own RNG draws, so per-turn seeds are not sent.

This module imports verl, ``agent_envs`` and the pure-Python parts of ``trainers``
(episodes, the collector, the policy interface); never TRL or the in-process trainer,
so it imports in a venv with verl's transformers pin (``scripts/setup_verl.sh``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
    register,
)

from agent_envs.harmony import RETURN
from agent_envs.rollout import RolloutCollector, RolloutConfig, derive_seed, draw_tasks
from agent_envs.rollout.episode import Episode, Segment
from agent_envs.rollout.policy import Policy, Sample, SampleRequest
from trainers.errors import TrainersError

__all__ = [
    "AGENT_NAME", "AgentEnvsAgentLoop", "EpisodeSpec", "ServerManagerPolicy", "VerlAdapterError",
    "VerlLoopConfig", "episode_spec", "episode_to_verl", "main", "rollout_config", "task_rows",
    "write_task_parquet",
]

#: The name the loop is registered under (``agent_name`` column / ``default_agent_loop``).
AGENT_NAME = "agent_envs"

#: ``<|return|>``: stands in for a prompt/response that has no tokens (masked out).
_FILLER_TOKEN = RETURN

#: Keys verl's rollout servers (vLLM, SGLang) accept in ``sampling_params`` that we pass on.
_FORWARDED_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")


class VerlAdapterError(TrainersError, ValueError):
    """The verl adapter was configured or fed in a way it cannot serve (the message says the fix)."""


@dataclass(frozen=True, kw_only=True)
class VerlLoopConfig:
    """Defaults of :class:`AgentEnvsAgentLoop` (keys of its agent-loop YAML entry).

    Attributes:
        env_id: Registered env id used when a row names none (``"python-tool"``).
        env_kwargs: Passed to ``agent_envs.make``; a row's ``extra_info.env_kwargs``
            is merged over them.
        multi_segment: An episode with more than one segment: ``"last"`` trains on
            its last segment, ``"error"`` raises.
        max_turn_tokens: Cap on one sampled turn (None: the env's budget and the
            room left in ``rollout.response_length`` only).
        episode_timeout_s: Wall-time limit of one episode; past it the episode is
            infra-flagged (None: no limit).
    """

    env_id: str | None = None
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    multi_segment: Literal["last", "error"] = "last"
    max_turn_tokens: int | None = None
    episode_timeout_s: float | None = 900.0

    def __post_init__(self) -> None:
        if self.multi_segment not in ("last", "error"):
            raise VerlAdapterError(f"agent_envs loop multi_segment must be 'last' or 'error', "
                                   f"got {self.multi_segment!r}.")
        if self.max_turn_tokens is not None and int(self.max_turn_tokens) < 1:
            raise VerlAdapterError(f"agent_envs loop max_turn_tokens must be >= 1 or null, "
                                   f"got {self.max_turn_tokens!r}.")
        if self.episode_timeout_s is not None and not float(self.episode_timeout_s) > 0:
            raise VerlAdapterError(f"agent_envs loop episode_timeout_s must be > 0 or null, "
                                   f"got {self.episode_timeout_s!r}.")


@dataclass(frozen=True, kw_only=True)
class EpisodeSpec:
    """Which episode a row asks for.

    Attributes:
        env_id: Registered env id.
        env_kwargs: ``agent_envs.make`` keyword arguments.
        task_id: Task to run (None: the env draws one from the seed).
        seed: Base seed; the env seed derives from it and the task id.
    """

    env_id: str
    env_kwargs: Mapping[str, Any]
    task_id: str | None
    seed: int


def _plain(x: Any) -> Any:
    """OmegaConf containers and numpy scalars as plain Python values."""
    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    if hasattr(x, "item") and not isinstance(x, (list, dict, str)):
        try:
            return x.item()
        except (TypeError, ValueError):
            return x
    return x


def episode_spec(row: Mapping[str, Any], defaults: VerlLoopConfig) -> EpisodeSpec:
    """Read the episode a dataset row asks for: its ``extra_info`` over the loop defaults.

    Raises:
        VerlAdapterError: No env id anywhere, malformed ``env_kwargs``, an unknown env id,
            or a non-integer seed.
    """
    import agent_envs

    extra = _plain(row.get("extra_info")) or {}
    if not isinstance(extra, Mapping):
        raise VerlAdapterError(f"row extra_info must be a dict, got {type(extra).__name__}: "
                               f"{str(extra)[:80]!r}; build rows with task_rows().")
    env_id = extra.get("env_id") or defaults.env_id
    if not env_id:
        raise VerlAdapterError(
            "no env id for this row: set extra_info.env_id in the dataset (task_rows() does) "
            "or env_id in the agent_envs entry of the agent-loop YAML.")
    try:
        agent_envs.spec(str(env_id))
    except Exception as e:  # UnknownEnvError: its message lists close ids
        raise VerlAdapterError(f"agent_envs loop: {e}") from e
    kwargs = dict(_plain(defaults.env_kwargs) or {})
    row_kwargs = _plain(extra.get("env_kwargs")) or {}
    if isinstance(row_kwargs, str):
        try:
            row_kwargs = json.loads(row_kwargs)
        except json.JSONDecodeError as e:
            raise VerlAdapterError(f"row extra_info.env_kwargs is not valid JSON ({e}): "
                                   f"{row_kwargs[:80]!r}") from e
    if not isinstance(row_kwargs, Mapping):
        raise VerlAdapterError(f"row extra_info.env_kwargs must be a dict or a JSON object, got "
                               f"{type(row_kwargs).__name__}: {str(row_kwargs)[:80]!r}.")
    kwargs.update(row_kwargs)
    task_id = extra.get("task_id")
    seed = _plain(extra.get("seed", extra.get("index", 0)))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VerlAdapterError(f"row extra_info.seed must be an integer, got {seed!r}.")
    return EpisodeSpec(env_id=str(env_id), env_kwargs=kwargs,
                       task_id=str(task_id) if task_id else None, seed=int(seed))


def rollout_config(spec: EpisodeSpec, *, max_tokens: int,
                   episode_timeout_s: float | None) -> RolloutConfig:
    """The one-episode :class:`RolloutConfig` the loop runs for ``spec``.

    Exposed so an in-process run reproduces the loop's episode exactly (same env seed,
    same task): ``RolloutCollector(policy, rollout_config(spec, ...)).collect()``.
    """
    key = spec.task_id or "row"
    return RolloutConfig(
        env_id=spec.env_id, env_kwargs=dict(spec.env_kwargs), num_groups=1, group_size=1,
        concurrency=1, max_batch_size=1, batch_window_s=0.0, max_tokens=max_tokens,
        episode_timeout_s=episode_timeout_s, seed=spec.seed,
        task_ids=(spec.task_id,) if spec.task_id else None, group_keys=(key,), progress=False)


def task_rows(env_id: str, num_tasks: int, *, seed: int = 0, split: str = "train",
              env_kwargs: Mapping[str, Any] | None = None,
              agent_name: str = AGENT_NAME) -> list[dict[str, Any]]:
    """Rows of a verl RL dataset (write them to Parquet) whose episodes are env tasks.

    Task ``i`` is ``env.task_source.sample(derive_seed(seed, "task", i), split)``. The
    ``prompt`` column holds only the task id as a user message (verl's dataset needs
    one; the env renders the real prompt), so set ``data.filter_overlong_prompts=False``.

    Args:
        env_id: Registered env id.
        num_tasks: Rows.
        seed: Base seed of the task draw; row ``i``'s episode seed is ``derive_seed(seed,
            "episode", i)``.
        split: ``"train"`` or ``"test"``.
        env_kwargs: Passed to ``agent_envs.make`` (stored as JSON in ``extra_info``).
        agent_name: The registered loop name (``"agent_envs"``).
    """
    if num_tasks < 1:
        raise VerlAdapterError(f"task_rows num_tasks must be >= 1, got {num_tasks!r}.")
    kwargs = dict(env_kwargs or {})
    ids = [t.id for t in draw_tasks(env_id, num_tasks, seed=seed, split=split,
                                    env_kwargs=kwargs)]
    return [{
        "data_source": f"agent_envs/{env_id}",
        "agent_name": agent_name,
        "prompt": [{"role": "user", "content": task_id}],
        "extra_info": {"index": i, "env_id": env_id, "env_kwargs": json.dumps(kwargs),
                       "task_id": task_id, "seed": derive_seed(seed, "episode", i)},
    } for i, task_id in enumerate(ids)]


# -- sampling through verl's server manager -------------------------------------------------------


class ServerManagerPolicy(Policy):
    """A :class:`Policy` over verl's ``server_manager.generate`` (token ids in and out).

    Each request becomes one ``generate(request_id=..., prompt_ids=..., sampling_params=...)``
    call with verl's sampling settings plus ``max_tokens`` (the request's budget, capped by
    ``room(prompt)`` when given), ``stop_token_ids`` (harmony's ``<|return|>``,
    ``<|call|>``) and ``logprobs=True``. ``finish_reason`` is ``"stop"`` when the last
    token is a stop token, else ``"length"``. An aborted request, or one with no
    log-probs, comes back failed (the collector infra-flags the episode).

    Args:
        server_manager: verl's ``LLMServerClient`` (anything with that ``generate``).
        sampling_params: What verl handed the agent loop.
        request_id: Sticky-session id: every turn of an episode goes to one server
            (prefix caching).
        room: Optional ``prompt -> tokens left`` cap on ``max_tokens``.
    """

    policy_id = "verl-server"

    def __init__(self, server_manager: Any, sampling_params: Mapping[str, Any], *,
                 request_id: str, room: Any = None) -> None:
        self.server_manager = server_manager
        self.sampling = {k: _plain(sampling_params[k]) for k in _FORWARDED_SAMPLING_KEYS
                         if k in sampling_params}
        self.request_id = request_id
        self.room = room
        #: A server answer that means the setup is wrong (raised after the episode).
        self.config_error: str | None = None

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample each request with one ``server_manager.generate`` call."""
        out = []
        for r in requests:
            out.append(await self._one(r))
        return out

    async def _one(self, r: SampleRequest) -> Sample:
        max_tokens = int(r.max_tokens)
        if self.room is not None:
            max_tokens = max(1, min(max_tokens, int(self.room(r.prompt))))
        params = {**self.sampling, "max_tokens": max_tokens,
                  "stop_token_ids": [int(t) for t in r.stop_token_ids], "logprobs": True}
        out = await self.server_manager.generate(
            request_id=self.request_id, prompt_ids=[int(t) for t in r.prompt],
            sampling_params=params)
        ids = [int(t) for t in out.token_ids]
        if getattr(out, "stop_reason", None) == "aborted" or not ids:
            return Sample.failed(f"the verl rollout server returned no tokens "
                                 f"(stop_reason={getattr(out, 'stop_reason', None)!r})")
        if out.log_probs is None or len(out.log_probs) != len(ids):
            self.config_error = (
                f"the verl rollout server returned {len(ids)} tokens with "
                f"{'no' if out.log_probs is None else len(out.log_probs)} log-probs; the "
                "agent_envs loop needs the sampler's log-probs (it asks for logprobs=True: use "
                "a vLLM/SGLang rollout, actor_rollout_ref.rollout.calculate_log_probs=True).")
            return Sample.failed(self.config_error)
        reason = "stop" if ids[-1] in r.stop_token_ids else "length"
        return Sample(token_ids=ids, logprobs=[float(x) for x in out.log_probs],
                      finish_reason=reason)


class _ResponseRoom:
    """Tokens left before a segment's response outgrows ``response_length``."""

    def __init__(self, response_length: int) -> None:
        self.response_length = int(response_length)
        self.segment_prompt_len = 0

    def __call__(self, prompt: Sequence[int]) -> int:
        return self.segment_prompt_len + self.response_length - len(prompt)


class _BudgetedEnv:
    """An env whose segments end (truncated) when verl's response width is used up."""

    def __init__(self, env: Any, room: _ResponseRoom) -> None:
        self.env = env
        self.room = room

    @property
    def task(self) -> Any:
        return getattr(self.env, "task", None)

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                     ) -> tuple[Any, dict[str, Any]]:
        obs, info = await self.env.areset(seed=seed, options=options)
        self.room.segment_prompt_len = len(obs)
        return obs, info

    async def astep(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = await self.env.astep(action)
        if info.get("new_segment"):
            self.room.segment_prompt_len = len(obs)
        if not (terminated or truncated) and self.room(obs) < 1:
            info = {**info, "truncated_reason": "response_length"}
            truncated = True
        return obs, reward, terminated, truncated, info

    async def aclose(self) -> None:
        await self.env.aclose()


# -- episode -> verl ------------------------------------------------------------------------------


def episode_to_verl(ep: Episode, *, multi_segment: Literal["last", "error"] = "last",
                    prompt_length: int | None = None, response_length: int | None = None,
                    ) -> dict[str, Any]:
    """The ``AgentLoopOutput`` fields of one episode.

    The chosen segment (see ``multi_segment``) gives ``prompt_ids`` (its prompt),
    ``response_ids`` (its completion: sampled and env tokens as the env produced them),
    ``response_mask`` (its loss mask) and ``response_logprobs`` (the sampler's, 0.0 on
    env tokens); ``reward_score`` is the episode reward. Infra-flagged episodes get an
    all-zero mask and reward 0.0; an empty prompt or response is one masked
    ``<|return|>``. ``extra_fields`` holds the episode id, task id, infra error and
    ``reward_extra_info`` (``env_solved``, ``env_infra``, ``env_turns``,
    ``env_tool_calls``, ``env_segments``), which verl logs.

    Raises:
        VerlAdapterError: Several segments with ``multi_segment="error"``, or a prompt
            longer than ``prompt_length``.
    """
    seg: Segment | None
    if len(ep.segments) > 1 and not ep.infra:
        if multi_segment == "error":
            raise VerlAdapterError(
                f"episode of task {ep.task_id!r} has {len(ep.segments)} segments (the env "
                "re-rendered the prompt); a verl sample is one prompt and one response. Set the "
                "env's answer_retries=0, or multi_segment: last in the agent-loop YAML to train "
                "on the last segment.")
        seg = ep.segments[-1]
    else:
        seg = ep.segments[0] if ep.segments else None
    prompt = list(seg.prompt) if seg is not None and seg.prompt else [_FILLER_TOKEN]
    if seg is not None and seg.completion:
        response, mask = list(seg.completion), [int(m) for m in seg.loss_mask]
        logprobs = [float(x) for x in seg.logprobs]
    else:
        response, mask, logprobs = [_FILLER_TOKEN], [0], [0.0]
    if prompt_length is not None and len(prompt) > prompt_length:
        raise VerlAdapterError(
            f"the env's prompt for task {ep.task_id!r} has {len(prompt)} tokens, more than "
            f"rollout.prompt_length={prompt_length}; cutting it would train on a context the "
            f"sampler never saw. Raise data.max_prompt_length to at least {len(prompt)}.")
    cut = 0
    if response_length is not None and len(response) > response_length:
        cut = len(response) - response_length
        response, mask, logprobs = (x[:response_length] for x in (response, mask, logprobs))
    if ep.infra:
        mask = [0] * len(response)
    tool_calls = sum(1 for t in ep.turns if t.tool_outcome)
    info = {"env_solved": float(ep.solved), "env_infra": float(ep.infra),
            "env_turns": float(len(ep.turns)), "env_tool_calls": float(tool_calls),
            "env_segments": float(len(ep.segments))}
    return {
        "prompt_ids": prompt, "response_ids": response, "response_mask": mask,
        "response_logprobs": logprobs, "reward_score": 0.0 if ep.infra else float(ep.reward),
        "num_turns": 1 + len(ep.turns) + tool_calls,
        "extra_fields": {"env_episode_id": ep.episode_id, "env_task_id": ep.task_id,
                         "env_infra_error": ep.infra_error, "env_response_cut": cut,
                         "turn_scores": [], "tool_rewards": [], "reward_extra_info": info},
    }


# -- the agent loop -------------------------------------------------------------------------------


@register(AGENT_NAME)
class AgentEnvsAgentLoop(AgentLoopBase):
    """verl agent loop running one agent_envs episode per dataset row (see the module doc).

    Keyword arguments besides verl's are :class:`VerlLoopConfig` fields, given in the
    agent-loop YAML entry::

        - name: agent_envs
          _target_: trainers.adapters.verl.AgentEnvsAgentLoop
          env_id: python-tool
          multi_segment: last

    Attributes:
        last_episode: The :class:`Episode` of the latest ``run`` (for inspection).
    """

    def __init__(self, *args: Any, env_id: str | None = None,
                 env_kwargs: Mapping[str, Any] | None = None,
                 multi_segment: Literal["last", "error"] = "last",
                 max_turn_tokens: int | None = None, episode_timeout_s: float | None = 900.0,
                 **kwargs: Any) -> None:
        kwargs.pop("name", None)  # the YAML entry's own name, passed on by hydra
        super().__init__(*args, **kwargs)
        self.loop_config = VerlLoopConfig(
            env_id=env_id, env_kwargs=_plain(env_kwargs) or {}, multi_segment=multi_segment,
            max_turn_tokens=max_turn_tokens, episode_timeout_s=episode_timeout_s)
        self.last_episode: Episode | None = None

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        """Run the episode the row asks for; return its exact tokens, mask, log-probs, reward.

        Raises:
            VerlAdapterError: A bad row or config (unknown env, env kwargs ``make`` rejects,
                a prompt over ``prompt_length``, a server without log-probs).
        """
        import agent_envs

        cfg = self.loop_config
        spec = episode_spec(kwargs, cfg)
        response_length = int(self.rollout_config.response_length)
        prompt_length = int(self.rollout_config.prompt_length)
        try:
            env = agent_envs.make(spec.env_id, **dict(spec.env_kwargs))
        except Exception as e:  # the env's own validation error, with its message
            raise VerlAdapterError(f"agent_envs.make({spec.env_id!r}, **{dict(spec.env_kwargs)!r}) "
                                   f"failed: {type(e).__name__}: {e}") from e
        room = _ResponseRoom(response_length)
        policy = ServerManagerPolicy(self.server_manager, sampling_params,
                                     request_id=uuid.uuid4().hex, room=room)
        max_tokens = min(cfg.max_turn_tokens or response_length, response_length)
        rcfg = rollout_config(spec, max_tokens=max_tokens,
                              episode_timeout_s=cfg.episode_timeout_s)
        budgeted = _BudgetedEnv(env, room)
        [ep] = await RolloutCollector(policy, rcfg, env_factory=lambda: budgeted).acollect()
        if policy.config_error is not None:
            raise VerlAdapterError(policy.config_error)
        self.last_episode = ep
        fields = episode_to_verl(ep, multi_segment=cfg.multi_segment,
                                 prompt_length=prompt_length, response_length=response_length)
        return AgentLoopOutput(
            **fields,
            metrics=AgentLoopMetrics(generate_sequences=ep.policy_s, tool_calls=ep.env_s))


# -- data files -----------------------------------------------------------------------------------


def write_task_parquet(path: str, env_id: str, num_tasks: int, *, seed: int = 0,
                       split: str = "train", env_kwargs: Mapping[str, Any] | None = None) -> str:
    """Write :func:`task_rows` to a Parquet file verl's ``RLHFDataset`` reads; returns the path."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = task_rows(env_id, num_tasks, seed=seed, split=split, env_kwargs=env_kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.adapters.verl``: write train/test Parquet files of env tasks."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m trainers.adapters.verl", description=(
        "Write verl RL datasets whose rows are agent_envs tasks (for the agent_envs loop)."))
    ap.add_argument("--env", required=True, help="registered env id, e.g. python-tool")
    ap.add_argument("--out", required=True, help="directory for ENV-train/ENV-test.parquet")
    ap.add_argument("--train", type=int, default=1024, help="train rows")
    ap.add_argument("--test", type=int, default=128, help="test rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-kwargs", default="{}", help="JSON object for agent_envs.make")
    args = ap.parse_args(argv)
    try:
        kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        ap.error(f"--env-kwargs is not valid JSON ({e}): {args.env_kwargs!r}")
    if not isinstance(kwargs, dict):
        ap.error(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    from agent_envs.errors import UnknownEnvError

    for split, n in (("train", args.train), ("test", args.test)):
        try:
            path = write_task_parquet(f"{args.out}/{args.env}-{split}.parquet", args.env, n,
                                      seed=args.seed, split=split, env_kwargs=kwargs)
        except (UnknownEnvError, VerlAdapterError, TypeError, ValueError) as e:
            ap.error(str(e))
        print(f"wrote {n} {split} rows to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
