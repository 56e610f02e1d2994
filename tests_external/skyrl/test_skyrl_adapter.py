"""The SkyRL adapter against SkyRL 0.3 itself: its validator, input builder, dataset, config, client.

Every output is checked with SkyRL's own ``validate_generator_output`` (unmodified), and
token for token against the ``Episode``s our ``RolloutCollector`` records in-process for
the same seeds and the same (deterministic) policy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _engine import ScriptedAgent, VLLMGenerateServer, dataset_rows, policy_engine
from skyrl.backends.skyrl_train.inference_servers.engine_utils import (
    get_sampling_params_for_backend,
)
from skyrl.backends.skyrl_train.inference_servers.remote_inference_client import (
    RemoteInferenceClient,
)
from skyrl.train.config import SamplingParams as SkyRLSamplingParams
from skyrl.train.generators.base import GeneratorInput
from skyrl.train.generators.utils import prepare_generator_input
from skyrl.train.utils.trainer_utils import validate_generator_output

import agent_envs
from agent_envs.harmony import get_codec
from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig, derive_seed
from agent_envs.rollout.episode import Episode
from agent_envs.rollout.policy import Policy, SamplingParams
from agent_envs.tasks.base import Task
from trainers.adapters.skyrl import (
    INFRA_STOP_REASON,
    AgentEnvsConfig,
    AgentEnvsGenerator,
    SkyRLAdapterError,
    batch_seed,
    load_config,
    write_task_dataset,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "skyrl" / "gpt_oss_20b_python_tool.yaml"
ENV_ID = "python-tool"
STOPS = [200002, 200012]
FILLER = 200002
STEP = 3


def skyrl_input(tasks: list[Task], reps: int, *, step: int = STEP,
                stop: list[str] | None = None, env_class: str | None = ENV_ID
                ) -> GeneratorInput:
    """A GeneratorInput built by SkyRL's own ``prepare_generator_input`` from dataset rows."""
    params = SkyRLSamplingParams(max_generate_length=768, temperature=0.7, logprobs=1, stop=stop)
    batch, _ = prepare_generator_input(
        dataset_rows(tasks, env_class), reps, get_sampling_params_for_backend("vllm", params),
        "gsm8k", "train", step)
    return batch


def reference(policy: Policy, tasks: list[Task], reps: int, *, step: int = STEP,
              env_kwargs: dict[str, Any] | None = None, max_tokens: int = 768,
              **kw: Any) -> list[Episode]:
    """The same episodes collected in-process: one per row, in row order."""
    cfg = RolloutConfig(env_id=ENV_ID, env_kwargs=dict(env_kwargs or {}), num_groups=len(tasks),
                        group_size=reps, max_tokens=max_tokens, seed=batch_seed(0, "train", step),
                        task_ids=tuple(t.id for t in tasks),
                        group_keys=tuple(f"uid-{t.id}" for t in tasks), progress=False, **kw)
    return RolloutCollector(policy, cfg).collect()


def generate(gen: AgentEnvsGenerator, batch: GeneratorInput) -> dict[str, Any]:
    return dict(asyncio.run(gen.generate(batch)))


def generate_via_engine(url: str, batch: GeneratorInput, config: AgentEnvsConfig, **kw: Any
                        ) -> tuple[AgentEnvsGenerator, dict[str, Any]]:
    """Generate with SkyRL's RemoteInferenceClient pointed at ``url`` (closed afterwards)."""

    async def go() -> tuple[AgentEnvsGenerator, dict[str, Any]]:
        async with RemoteInferenceClient(proxy_url=url, server_urls=[url], data_parallel_size=1,
                                         model_name="gpt-oss-test") as client:
            gen = AgentEnvsGenerator(client, config, **kw)
            return gen, dict(await gen.generate(batch))

    return asyncio.run(go())


def rows_of(out: dict[str, Any], instance_id: str, rep: int) -> list[int]:
    return [k for k, t in enumerate(out["trajectory_ids"])
            if t.instance_id == instance_id and t.repetition_id == rep]


def runs(mask: list[int], value: int) -> list[tuple[int, int]]:
    """Maximal ``[start, end)`` runs of ``value`` in ``mask``."""
    out, pos = [], 0
    for v, group in itertools.groupby(mask):
        n = len(list(group))
        if v == value:
            out.append((pos, pos + n))
        pos += n
    return out


def assert_rows_equal_episode(out: dict[str, Any], rows: list[int], ep: Episode) -> None:
    """The rows of one trajectory hold exactly the episode's segments, reward on the last."""
    assert len(rows) == len(ep.segments)
    for k, seg in zip(rows, ep.segments):
        assert out["prompt_token_ids"][k] == seg.prompt
        assert out["response_ids"][k] == seg.completion
        assert out["loss_masks"][k] == seg.loss_mask
        assert out["rollout_logprobs"][k] == seg.logprobs
    assert [out["rewards"][k] for k in rows] == [0.0] * (len(rows) - 1) + [ep.reward]
    if out["is_last_step"] is not None:
        assert [out["is_last_step"][k] for k in rows] == [False] * (len(rows) - 1) + [True]


# -- through SkyRL's real inference client, over HTTP ---------------------------------------------


def test_engine_client_rows_match_in_process_episodes(tasks: list[Task]) -> None:
    """Multi-turn python-tool episodes (3 tool calls) via RemoteInferenceClient -> our rows."""
    agent = ScriptedAgent(tasks[:3], warmups=2)
    batch = skyrl_input(tasks[:3], 2, stop=["</answer>"])
    with VLLMGenerateServer(agent) as server:
        gen, out = generate_via_engine(server.url, batch, AgentEnvsConfig(concurrency=4),
                                       step_wise=True)
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    eps = reference(agent.as_policy(), tasks[:3], 2)
    codec = get_codec()
    for ep in eps:
        task = tasks[ep.group_id]
        rows = rows_of(out, f"uid-{task.id}", ep.index)
        assert ep.task_id == task.id and len(ep.turns) == 4 and ep.reward == 1.0
        assert_rows_equal_episode(out, rows, ep)
        (k,) = rows
        mask = out["loss_masks"][k]
        env_runs = runs(mask, 0)
        assert len(env_runs) == 3  # three tool results, each with the next <|start|>assistant
        for a, b in env_runs:
            text = codec.decode(out["response_ids"][k][a:b])
            assert text.startswith("<|start|>python to=assistant") and \
                text.endswith("<|start|>assistant"), text
        # The sampled runs are exactly what the engine sent for this episode, in order.
        session = f"{gen.last_seed}-{ep.episode_id}"
        sent = [c for s, _, c in server.requests if s == session]
        assert [b - a for a, b in runs(mask, 1)] == [len(c["token_ids"]) for c in sent]
        sampled = [t for t, m in zip(out["response_ids"][k], mask) if m]
        assert sampled == [t for c in sent for t in c["token_ids"]]
        lps = [x for x, m in zip(out["rollout_logprobs"][k], mask) if m]
        assert lps == [e["logprob"] for c in sent for e in c["logprobs"]["content"]]
        assert all(x == 0.0 for x, m in zip(out["rollout_logprobs"][k], mask) if not m)
        assert out["stop_reasons"][k] == "stop"
    # What reached the engine: harmony stop ids, no string stops, SkyRL's temperature and
    # logprobs, and per-turn seeds derived as the collector derives them.
    seeds = {derive_seed(ep.sample_seed, t) for ep in eps for t in range(len(ep.turns))}
    bodies = [b for _, b, _ in server.requests]
    assert len(bodies) == sum(len(ep.turns) for ep in eps) == 24
    for b in bodies:
        p = b["sampling_params"]
        assert p["stop_token_ids"] == STOPS and "stop" not in p
        assert p["temperature"] == 0.7 and p["logprobs"] == 1 and p["max_tokens"] <= 768
        assert b["model"] == "gpt-oss-test"
    assert {b["sampling_params"]["seed"] for b in bodies} == seeds
    m = out["rollout_metrics"]
    assert m["agent_envs/tool_calls"] == 3.0 and m["agent_envs/mean_reward"] == 1.0
    assert m["agent_envs/masked_groups"] == 0.0


def test_tiny_gpt_oss_sampler_through_skyrl_client(tasks: list[Task]) -> None:
    """A real (tiny, random) gpt-oss sampled behind the engine: its log-probs arrive unchanged.

    The random model never stops by itself: each turn is cut at max_turn_tokens, the env
    appends its notice (masked), and the turn budget ends the episode with reward 0.
    """
    from trainers.models.gpt_oss import build_tiny_gpt_oss
    from trainers.policies.hf import TransformersPolicy

    model = build_tiny_gpt_oss(seed=0)
    env_kwargs = {"max_turns": 2}
    batch = skyrl_input(tasks[:2], 2)
    served = TransformersPolicy(model, max_batch_size=1, pad_token_id=199999)
    with VLLMGenerateServer(policy_engine(served)) as server:
        _, out = generate_via_engine(
            server.url, batch,
            AgentEnvsConfig(env_kwargs=env_kwargs, max_turn_tokens=12, concurrency=4))
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    eps = reference(TransformersPolicy(model, max_batch_size=1, pad_token_id=199999), tasks[:2],
                    2, env_kwargs=env_kwargs, max_tokens=12, max_batch_size=1,
                    sampling=SamplingParams(temperature=0.7))
    for ep in eps:
        (k,) = rows_of(out, f"uid-{tasks[ep.group_id].id}", ep.index)
        seg = ep.segments[0]
        assert out["prompt_token_ids"][k] == seg.prompt
        assert out["response_ids"][k] == seg.completion
        assert out["loss_masks"][k] == seg.loss_mask
        assert out["rollout_logprobs"][k] == pytest.approx(seg.logprobs, abs=1e-6)
        mask = out["loss_masks"][k]
        assert [b - a for a, b in runs(mask, 1)] == [12, 12] and len(runs(mask, 0)) == 1
        sampled_lps = [x for x, m in zip(out["rollout_logprobs"][k], mask) if m]
        assert all(x < 0 for x in sampled_lps)  # real log-probs, not the oracle's 0.0
        assert out["stop_reasons"][k] == "length" and out["rewards"][k] == 0.0
    # Different seeds, different samples: the four episodes are not copies of each other.
    assert len({tuple(r) for r in out["response_ids"]}) == 4


def test_engine_failure_masks_the_whole_group(tasks: list[Task]) -> None:
    """HTTP 500 for one task: its group becomes masked placeholders; the validator still passes."""
    agent = ScriptedAgent(tasks[:3], warmups=1, fail_tasks=[tasks[1].id])
    batch = skyrl_input(tasks[:3], 2)
    with VLLMGenerateServer(agent) as server:
        _, out = generate_via_engine(server.url, batch, AgentEnvsConfig(concurrency=6))
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    failed = [k for k, t in enumerate(out["trajectory_ids"]) if t.instance_id == f"uid-{tasks[1].id}"]
    assert len(failed) == 2
    for k in failed:
        assert out["prompt_token_ids"][k] == [FILLER] and out["response_ids"][k] == [FILLER]
        assert out["loss_masks"][k] == [0] and out["rollout_logprobs"][k] == [0.0]
        assert out["rewards"][k] == 0.0 and out["is_last_step"][k] is True
        assert out["stop_reasons"][k] == INFRA_STOP_REASON
        assert "engine worker died (injected)" in out["env_metrics"][k]["infra_error"]
    eps = reference(agent.as_policy(), [tasks[0], tasks[2]], 2)
    for ep in eps:
        task = [tasks[0], tasks[2]][ep.group_id]
        assert_rows_equal_episode(out, rows_of(out, f"uid-{task.id}", ep.index), ep)
    assert out["rollout_metrics"]["agent_envs/masked_groups"] == 1.0
    assert out["rollout_metrics"]["agent_envs/infra_frac"] == pytest.approx(2 / 6)


def test_engine_without_logprobs_is_a_setup_error_not_masked_groups(tasks: list[Task]) -> None:
    """A server that answers tokens with ``"logprobs": null``: every request would fail, so
    ``generate`` raises (with the fix) after the batch instead of masking every group."""
    agent = ScriptedAgent(tasks[:3], warmups=1)
    batch = skyrl_input(tasks[:3], 2)
    with (VLLMGenerateServer(agent, logprobs=False) as server,
          pytest.raises(SkyRLAdapterError) as info):
        generate_via_engine(server.url, batch, AgentEnvsConfig(concurrency=6))
    msg = str(info.value)
    assert "no log-probs" in msg and "sampling_params.logprobs=1" in msg
    assert "logprobs_mode: processed_logprobs" in msg
    assert "infra-flagged 6 of 6 episodes" in msg
    # Raised after the collector finished: each of the 6 episodes sent its first request
    # (and failed on it), each asking for log-probs (skyrl_input's logprobs=1).
    assert len(server.requests) == 6
    assert {body["sampling_params"]["logprobs"] for _, body, _ in server.requests} == {1}
    assert all(choice["logprobs"] is None and choice["token_ids"]
               for _, _, choice in server.requests)


@pytest.mark.parametrize(("status", "failing", "setup_error"), [
    (404, [1], "ClientResponseError: 404"),
    (400, [0, 1, 2], "all 6 requests to the inference engine were rejected with HTTP 400"),
    (400, [1], None),
])
def test_http_errors_that_recur_raise_and_others_mask(
        tasks: list[Task], status: int, failing: list[int], setup_error: str | None) -> None:
    """404 (e.g. an unknown model name) recurs on every request: an error. A 400 for every
    request (a bad sampling param) too; a 400 for one task only (one prompt) masks its group."""
    agent = ScriptedAgent(tasks[:3], warmups=1, fail_tasks=[tasks[i].id for i in failing],
                          fail_status=status)
    batch = skyrl_input(tasks[:3], 2)
    with VLLMGenerateServer(agent) as server:
        if setup_error is not None:
            with pytest.raises(SkyRLAdapterError, match=setup_error) as info:
                generate_via_engine(server.url, batch, AgentEnvsConfig(concurrency=6))
            assert "engine worker died (injected)" in str(info.value)
            return
        _, out = generate_via_engine(server.url, batch, AgentEnvsConfig(concurrency=6))
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    assert out["rollout_metrics"]["agent_envs/masked_groups"] == 1.0
    masked = {out["trajectory_ids"][k].instance_id for k, r in enumerate(out["stop_reasons"])
              if r == INFRA_STOP_REASON}
    assert masked == {f"uid-{tasks[1].id}"}


# -- with one of our policies, in-process ---------------------------------------------------------


def test_oracle_rows_one_per_trajectory_without_step_wise(tasks: list[Task]) -> None:
    batch = skyrl_input(tasks[:4], 2)
    gen = AgentEnvsGenerator(OraclePolicy(), step_wise=False)
    out = generate(gen, batch)
    validate_generator_output(len(batch["prompts"]), out, step_wise=False)
    assert len(out["response_ids"]) == len(batch["prompts"]) == 8
    assert out["is_last_step"] is None
    for ep in reference(OraclePolicy(), tasks[:4], 2):
        rows = rows_of(out, f"uid-{tasks[ep.group_id].id}", ep.index)
        assert_rows_equal_episode(out, rows, ep)
        assert out["rewards"][rows[0]] == 1.0
    # The generator kept the episodes it returned, one per input row.
    assert [e.task_id for e in gen.last_episodes] == [t.id for t in tasks[:4] for _ in (0, 1)]


def test_wrong_answers_get_reward_zero_on_their_row(tasks: list[Task]) -> None:
    batch = skyrl_input(tasks[:2], 2)
    out = generate(AgentEnvsGenerator(OraclePolicy(wrong=True)), batch)
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    assert out["rewards"] == [0.0] * 4
    assert all(sum(m) > 0 for m in out["loss_masks"])  # still trained on: a real outcome


def test_multi_segment_episode_gives_one_row_per_segment(tasks: list[Task]) -> None:
    """answer_retries=1 and an answer with nothing to extract: the env re-renders the prompt."""
    agent = ScriptedAgent(tasks[:2], warmups=0, hedge=True)
    env_kwargs = {"answer_retries": 1}
    batch = skyrl_input(tasks[:2], 2)
    gen = AgentEnvsGenerator(agent.as_policy(), AgentEnvsConfig(env_kwargs=env_kwargs))
    out = generate(gen, batch)
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    assert len(out["response_ids"]) == 8
    codec = get_codec()
    for ep in reference(agent.as_policy(), tasks[:2], 2, env_kwargs=env_kwargs):
        rows = rows_of(out, f"uid-{tasks[ep.group_id].id}", ep.index)
        assert len(ep.segments) == 2
        assert_rows_equal_episode(out, rows, ep)
        first, second = rows
        assert [out["rewards"][k] for k in rows] == [0.0, 1.0]
        assert out["is_last_step"][first] is False and out["is_last_step"][second] is True
        # The second prompt is a fresh render, not the first stream extended.
        stream = out["prompt_token_ids"][first] + out["response_ids"][first]
        assert out["prompt_token_ids"][second][: len(stream)] != stream
        assert "State it once more" in codec.decode(out["prompt_token_ids"][second])
    with pytest.raises(SkyRLAdapterError, match="step_wise_trajectories=true"):
        generate(AgentEnvsGenerator(agent.as_policy(), AgentEnvsConfig(env_kwargs=env_kwargs),
                                    step_wise=False), batch)


class _FlakyEnv:
    """A real python-tool env whose first step on one task reports an infrastructure fault."""

    failures_left = 1

    def __init__(self, fail_task: str) -> None:
        self.env = agent_envs.make(ENV_ID)
        self.fail_task = fail_task

    @property
    def task(self) -> Any:
        return self.env.task

    async def areset(self, **kw: Any) -> Any:
        return await self.env.areset(**kw)

    async def astep(self, action: Any) -> Any:
        obs, reward, term, trunc, info = await self.env.astep(action)
        if self.env.task.id == self.fail_task and _FlakyEnv.failures_left > 0:
            _FlakyEnv.failures_left -= 1
            info = dict(info, infra_error="sandbox crashed (injected)")
        return obs, reward, term, trunc, info

    async def aclose(self) -> None:
        await self.env.aclose()


def test_env_infra_error_masks_its_healthy_group_mates(tasks: list[Task]) -> None:
    _FlakyEnv.failures_left = 1
    batch = skyrl_input(tasks[:2], 2)
    gen = AgentEnvsGenerator(OraclePolicy(), step_wise=False,
                             env_factory=lambda env_id: _FlakyEnv(tasks[0].id))
    out = generate(gen, batch)
    validate_generator_output(len(batch["prompts"]), out, step_wise=False)
    assert len(out["response_ids"]) == 4
    group = rows_of(out, f"uid-{tasks[0].id}", 0) + rows_of(out, f"uid-{tasks[0].id}", 1)
    # Exactly one episode of the group was hit, and both of the group's rows are masked.
    assert sum(gen.last_episodes[k].infra for k in group) == 1
    assert all(out["loss_masks"][k] == [0] and out["rewards"][k] == 0.0 for k in group)
    other = rows_of(out, f"uid-{tasks[1].id}", 0) + rows_of(out, f"uid-{tasks[1].id}", 1)
    assert all(sum(out["loss_masks"][k]) > 0 and out["rewards"][k] == 1.0 for k in other)
    assert out["rollout_metrics"]["agent_envs/masked_frac"] == 0.5


# -- bad input ------------------------------------------------------------------------------------


def test_bad_env_id_is_a_clear_error(tasks: list[Task]) -> None:
    gen = AgentEnvsGenerator(OraclePolicy())
    with pytest.raises(SkyRLAdapterError, match=r"'pyhton-tool'.*python-tool"):
        generate(gen, skyrl_input(tasks[:1], 1, env_class="pyhton-tool"))
    # SkyRL's default env class (a SkyRL-Gym env) is named as such.
    with pytest.raises(SkyRLAdapterError, match=r"'gsm8k'.*environment.env_class"):
        generate(gen, skyrl_input(tasks[:1], 1, env_class=None))
    with pytest.raises(SkyRLAdapterError, match="no prompts"):
        generate(gen, {"prompts": [], "env_classes": [], "env_extras": [],
                       "sampling_params": None, "trajectory_ids": [], "batch_metadata": None})
    with pytest.raises(SkyRLAdapterError, match="concurrency must be >= 1"):
        AgentEnvsConfig(concurrency=0)


# -- SkyRL's config and data machinery ------------------------------------------------------------


def test_example_config_parses_and_validates_with_skyrl() -> None:
    from skyrl.train.utils import validate_cfg

    cfg = load_config(EXAMPLE, ["generator.agent_envs.concurrency=7"])
    validate_cfg(cfg)
    ae = cfg.generator.agent_envs
    assert isinstance(ae, AgentEnvsConfig) and ae.concurrency == 7
    assert cfg.environment.env_class == ENV_ID and cfg.generator.step_wise_trajectories
    assert cfg.trainer.policy.model.path == "openai/gpt-oss-20b"
    agent_envs.make(ENV_ID, **ae.env_kwargs).close()  # the env takes its kwargs
    gen = AgentEnvsGenerator.from_skyrl_config(cfg, OraclePolicy())
    assert gen.step_wise and gen.default_env_id == ENV_ID and gen.config is ae
    # The entrypoint's experiment is SkyRL's BasePPOExp with this generator.
    from skyrl.train.entrypoints.main_base import BasePPOExp

    from trainers.adapters.skyrl import _ppo_exp_class

    exp_cls = _ppo_exp_class()
    assert issubclass(exp_cls, BasePPOExp)
    exp = object.__new__(exp_cls)  # __init__ would load the HF tokenizer and datasets
    made = exp.get_generator(cfg, None, OraclePolicy())
    assert isinstance(made, AgentEnvsGenerator) and made.model_name == "openai/gpt-oss-20b"
    with pytest.raises(ValueError, match="concurency"):
        load_config(EXAMPLE, ["generator.agent_envs.concurency=3"])
    with pytest.raises(SkyRLAdapterError, match="does not exist"):
        load_config(EXAMPLE.with_name("nope.yaml"))


def test_cli_check_and_dataset(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "trainers.adapters.skyrl", "train", str(EXAMPLE),
                          "--check", "trainer.train_batch_size=32"],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "config ok: env python-tool, model openai/gpt-oss-20b, step_wise=True" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "trainers.adapters.skyrl", "train", str(EXAMPLE),
                          "--check", "environment.env_class=gsm8k"],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: env class 'gsm8k' is not an agent_envs environment")
    out = tmp_path / "d" / "test.jsonl"
    ds = subprocess.run([sys.executable, "-m", "trainers.adapters.skyrl", "dataset", "--env",
                         ENV_ID, "--num", "3", "--split", "test", "--out", str(out)],
                        check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ds.returncode == 0, ds.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["env_class"] for r in rows] == [ENV_ID] * 3
    assert all("/test/" in r["task_id"] and r["prompt"][0]["role"] == "user" for r in rows)
    env = agent_envs.make(ENV_ID)
    assert [env.task_source.get(r["task_id"]).prompt for r in rows] == \
        [r["prompt"][0]["content"] for r in rows]
    env.close()


class _HarmonyChatTokenizer:
    """Renders chat messages as harmony tokens (SkyRL's dataset filters rows by this length)."""

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> list[int]:
        codec = get_codec()
        return codec.render_prompt([codec.user_message(m["content"]) for m in messages])


def test_task_dataset_through_skyrl_prompt_dataset(tmp_path: Path) -> None:
    """write_task_dataset -> SkyRL's PromptDataset and collate_fn -> generator -> validator."""
    from skyrl.train.dataset import PromptDataset

    path = write_task_dataset(tmp_path / "train.jsonl", ENV_ID, 3, seed=5)
    ds = PromptDataset(datasets=[str(path)], tokenizer=_HarmonyChatTokenizer(),
                       max_prompt_length=2048, num_workers=1)
    assert len(ds) == 3
    rows = ds.collate_fn([ds[i] for i in range(3)])
    batch, uids = prepare_generator_input(
        rows, 2, get_sampling_params_for_backend("vllm", SkyRLSamplingParams()), "gsm8k",
        "train", 1)
    gen = AgentEnvsGenerator(OraclePolicy())
    out = generate(gen, batch)
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    env = agent_envs.make(ENV_ID)
    want = [env.task_source.sample(derive_seed(5, "task", i), "train").id for i in range(3)]
    env.close()
    assert [row["env_extras"]["task_id"] for row in rows] == want
    assert [e.task_id for e in gen.last_episodes] == [w for w in want for _ in (0, 1)]
    assert out["rewards"] == [1.0] * 6 and uids == ["0", "0", "1", "1", "2", "2"]


def test_import_pulls_no_train_extra_modules() -> None:
    code = ("import sys, trainers.adapters.skyrl; "
            "bad = [m for m in ('trl', 'trainers.adapters.trl', 'trainers.models', 'trainers.train')"
            " if m in sys.modules]; print(bad)")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


# -- SkyRL's own trainer math on our rows ---------------------------------------------------------


class _Tokenizer:
    pad_token_id = 200017  # <|reserved_200017|>: never sampled, only pads


class _OneRank:
    """``WorkerDispatch`` stand-in: the batch is padded to a multiple of 1 data-parallel rank."""

    def get_lcm_dp_size(self) -> int:
        return 1


def test_skyrl_trainer_broadcasts_each_episode_advantage_to_all_its_segments(
        tasks: list[Task]) -> None:
    """RayPPOTrainer's own postprocess / batch conversion / GRPO step-wise advantages.

    Episodes with two segments (answer_retries=1), some right and some wrong within a
    group, and one masked group: every token of every segment gets its episode's GRPO
    advantage, and the masked group none.
    """
    from skyrl.train.trainer import RayPPOTrainer

    agent = ScriptedAgent(tasks, warmups=1, hedge=True, fail_tasks=[tasks[5].id],
                          wrong_when=lambda seed: seed is not None and seed % 2 == 0)
    env_kwargs = {"answer_retries": 1}
    batch = skyrl_input(tasks, 2)
    with VLLMGenerateServer(agent) as server:
        gen, out = generate_via_engine(server.url, batch,
                                       AgentEnvsConfig(env_kwargs=env_kwargs, concurrency=12))
    validate_generator_output(len(batch["prompts"]), out, step_wise=True)
    eps = gen.last_episodes
    spread = [g for g in range(5) if eps[2 * g].reward != eps[2 * g + 1].reward]
    assert spread, "the seeds gave no group with both outcomes; change wrong_when"

    cfg = load_config(EXAMPLE, [f"trainer.train_batch_size={len(tasks)}",
                                f"trainer.policy_mini_batch_size={len(tasks)}",
                                "generator.n_samples_per_prompt=2"])
    trainer = object.__new__(RayPPOTrainer)  # its methods below use cfg/tokenizer/metrics only
    trainer.cfg, trainer.tokenizer, trainer.all_metrics = cfg, _Tokenizer(), {}
    trainer.dispatch = _OneRank()
    uids = [t.instance_id for t in out["trajectory_ids"]]
    post, uids = trainer.postprocess_generator_output(dict(out), uids)
    data = trainer.convert_to_training_input(post, uids)
    data["values"] = None
    data = trainer.compute_advantages_and_returns(data)
    adv, loss_mask = data["advantages"], data["loss_mask"]

    for g, task in enumerate(tasks):
        rewards = [eps[2 * g + i].reward for i in (0, 1)]
        for i in (0, 1):
            rows = rows_of(out, f"uid-{task.id}", i)
            if g == 5:  # the failed group: one placeholder row, nothing to learn
                assert len(rows) == 1 and loss_mask[rows[0]].sum() == 0
                assert float(adv[rows[0]].abs().max()) == 0.0
                continue
            assert len(rows) == 2  # two segments, two rows
            mean = sum(rewards) / 2
            std = (sum((r - mean) ** 2 for r in rewards) / 1) ** 0.5  # torch.std: unbiased
            want = (rewards[i] - mean) / (std + 1e-6)
            for k in rows:
                on = loss_mask[k].bool()
                assert int(on.sum()) == sum(out["loss_masks"][k]) > 0
                assert adv[k][on].tolist() == pytest.approx([want] * int(on.sum()), abs=1e-5)
    assert any(abs(float(adv[k].abs().max())) > 0.5 for k in range(len(out["rewards"])))


class _HarmonyDecoder(_HarmonyChatTokenizer):
    def decode(self, ids: list[int], **kw: Any) -> str:
        return get_codec().decode(ids)

    def batch_decode(self, batch: list[list[int]], **kw: Any) -> list[str]:
        return [self.decode(ids) for ids in batch]


def test_skyrl_eval_loop_scores_the_last_segment_of_each_episode(
        tasks: list[Task], tmp_path: Path) -> None:
    """SkyRL's own ``evaluate_step_wise`` (eval-only: global_step None) drives the generator."""
    from skyrl.train.evaluate import evaluate_step_wise

    agent = ScriptedAgent(tasks, warmups=0, hedge=True,
                          wrong_when=lambda seed: seed is not None and seed % 2 == 0)
    cfg = load_config(EXAMPLE, ["generator.eval_n_samples_per_prompt=2",
                                f"trainer.export_path={tmp_path}",
                                "generator.agent_envs.env_kwargs.answer_retries=1"])
    rows = dataset_rows(tasks)
    for row in rows:
        row["env_extras"]["data_source"] = "python-tool"
    loader = [rows[:3], rows[3:]]  # two eval batches
    gen = AgentEnvsGenerator.from_skyrl_config(cfg, agent.as_policy())
    episodes: list[Episode] = []
    generate_batch = gen.generate

    async def recording(batch: GeneratorInput) -> Any:
        out = await generate_batch(batch)
        episodes.extend(gen.last_episodes)
        meta = batch["batch_metadata"]
        assert meta is not None and meta.training_phase == "eval" and meta.global_step is None
        return out

    gen.generate = recording  # type: ignore[method-assign]
    metrics = asyncio.run(evaluate_step_wise(loader, gen, cfg, None, _HarmonyDecoder()))
    assert len(episodes) == 12 and all(len(e.segments) == 2 for e in episodes)
    rewards = [e.reward for e in episodes]
    assert 0 < sum(rewards) < 12  # both outcomes occur, so the mean is informative
    assert metrics["eval/all/avg_score"] == pytest.approx(sum(rewards) / 12)
    assert metrics["eval/python-tool/avg_score"] == pytest.approx(sum(rewards) / 12)
    dumped = list((tmp_path / "dumped_evals" / "eval_only").glob("*.jsonl"))
    assert dumped, "SkyRL dumped no eval results"


def test_skyrl_non_step_wise_eval_loop(tasks: list[Task], tmp_path: Path) -> None:
    """SkyRL's ``evaluate`` (one row per prompt) with the oracle and its wrong twin."""
    from skyrl.train.evaluate import evaluate

    cfg = load_config(EXAMPLE, ["generator.step_wise_trajectories=false",
                                f"trainer.export_path={tmp_path}"])
    for policy, score in ((OraclePolicy(), 1.0), (OraclePolicy(wrong=True), 0.0)):
        gen = AgentEnvsGenerator.from_skyrl_config(cfg, policy)
        assert gen.step_wise is False
        metrics = asyncio.run(evaluate([dataset_rows(tasks[:4])], gen, cfg, 7, _HarmonyDecoder()))
        assert metrics["eval/all/avg_score"] == score
        assert metrics["eval/all/pass_at_1"] == score
