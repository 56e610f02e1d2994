"""The verl adapter, run by verl itself (0.9.1, CPU torch, no vLLM).

Rows go through verl's own data path (``RLHFDataset`` + ``collate_fn`` over a Parquet file
written by ``task_rows``) into verl's own ``AgentLoopWorker``, which instantiates our loop
from ``configs/verl/agent_loop.yaml`` and pads its outputs into a batch. Sampling goes
through verl's own ``LLMServerClient`` to a fake vLLM server (no GPU here) backed by the
tiny gpt-oss sampler. Every batch is checked against an ``Episode`` collected in-process
by our ``RolloutCollector`` with the same sampler.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR, compose_config
from verl_fakes import PromptSeededSampler, ScriptedSampler, prompt_seed  # noqa: F401

import agent_envs
from agent_envs.rollout import RolloutCollector
from agent_envs.rollout.episode import Episode
from trainers.adapters.verl import (
    AGENT_NAME,
    AgentEnvsAgentLoop,
    VerlAdapterError,
    VerlLoopConfig,
    episode_spec,
    main,
    rollout_config,
    task_rows,
)

RETURN, CALL = 200002, 200012
PY_KWARGS = {"max_turns": 3, "difficulty": 1}


# -- helpers ---------------------------------------------------------------------------------------


def verl_batch(rows: list[dict[str, Any]], worker: Any, tmp_path: Path, n: int = 1) -> Any:
    """Rows -> Parquet -> verl's RLHFDataset/collate_fn -> ``n`` copies of each row, as
    verl's trainer makes for ``rollout.n`` -> AgentLoopWorker.generate_sequences."""
    import datasets
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    path = tmp_path / f"rows-{len(list(tmp_path.iterdir()))}.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    ds = RLHFDataset(str(path), worker.tokenizer, worker.config.data)
    batch = DataProto.from_single_dict(collate_fn([ds[i] for i in range(len(ds))]))
    if n > 1:
        batch = batch.repeat(repeat_times=n, interleave=True)
    batch.meta_info = {"global_steps": 1, "validate": False}
    return asyncio.run(worker.generate_sequences(batch))


def reference_episode(row: dict[str, Any], sampler: Any, max_tokens: int) -> Episode:
    """The row's episode collected in-process by our collector (no verl involved)."""
    spec = episode_spec(row, VerlLoopConfig())
    cfg = rollout_config(spec, max_tokens=max_tokens, episode_timeout_s=None)
    [ep] = RolloutCollector(sampler, cfg).collect()
    return ep


def unpad(out: Any, i: int) -> dict[str, Any]:
    """Row ``i`` of verl's padded batch, padding removed with verl's own attention mask."""
    b = out.batch
    plen = b["prompts"].shape[1]
    attn = b["attention_mask"][i]
    p_valid = attn[:plen].bool()
    r_valid = attn[plen:].bool()
    return {
        "prompt": b["prompts"][i][p_valid].tolist(),
        "response": b["responses"][i][r_valid].tolist(),
        "mask": b["response_mask"][i][r_valid].tolist(),
        "logprobs": b["rollout_log_probs"][i][r_valid].tolist(),
        "rm": b["rm_scores"][i][r_valid].tolist(),
        "position_ids": b["position_ids"][i][attn.bool()].tolist(),
        "mask_on_padding": b["response_mask"][i][~r_valid].tolist(),
    }


def last_segment_matches(row: dict[str, Any], ep: Episode, segment: int = -1) -> None:
    seg = ep.segments[segment]
    assert row["prompt"] == seg.prompt
    assert row["response"] == seg.completion
    assert row["mask"] == seg.loss_mask
    # verl stores log-probs as float32: exact up to that cast.
    assert row["logprobs"] == [float(np.float32(x)) for x in seg.logprobs]
    assert row["rm"][-1] == pytest.approx(ep.reward) and not any(row["rm"][:-1])
    assert row["position_ids"] == list(range(len(seg.prompt) + len(seg.completion)))
    assert not any(row["mask_on_padding"])


# -- import and config -----------------------------------------------------------------------------


def test_import_registers_loop_and_pulls_in_no_trl_or_trainer() -> None:
    code = ("import sys, trainers.adapters.verl as v\n"
            "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry as r\n"
            "print(r['agent_envs']['_target_'])\n"
            "bad = [m for m in sys.modules if m == 'trl' or m.startswith('trl.') or "
            "m in ('trainers.train', 'trainers.adapters.trl')]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    target, bad = out.stdout.split("\n")[:2]
    assert target == "trainers.adapters.verl.AgentEnvsAgentLoop"
    assert bad == "[]"


def test_example_config_composes_over_verl_and_passes_its_validation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from verl.trainer.config.algorithm import RolloutCorrectionConfig
    from verl.trainer.main_ppo import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.utils.import_utils import resolve_config_path

    from trainers.models.attention import check_attn_implementation

    cfg = compose_config([])
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg),
                    use_critic=need_critic(cfg))
    algo = omega_conf_to_dataclass(cfg.algorithm)
    # verl's own typed config validates the combination (it raises on invalid ones).
    rc = RolloutCorrectionConfig(**dict(algo.rollout_correction))
    assert algo.adv_estimator == "grpo"
    assert rc.bypass_mode is True and rc.loss_type == "ppo_clip"
    assert rc.rollout_is == "token" and float(rc.rollout_is_threshold) == 2.0
    # The k3 rejection band is our own k3 preset's (verl's usual 0.01 drops ~20% of
    # sequences at a per-token KL of 1e-2).
    from trainers.rollout_correction import PRESETS

    assert rc.rollout_rs == "seq_mean_k3"
    assert float(rc.rollout_rs_threshold) == PRESETS["k3_mask"]["k3_max"] == 0.05
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert rollout.calculate_log_probs and rollout.logprobs_mode == "processed_logprobs"
    assert rollout.agent.default_agent_loop == AGENT_NAME
    attn = cfg.actor_rollout_ref.model.override_config.attn_implementation
    assert check_attn_implementation(attn) == "eager"  # our sink guard accepts it
    assert cfg.actor_rollout_ref.model.use_remove_padding is False
    assert cfg.data.filter_overlong_prompts is False
    monkeypatch.chdir(CONFIG_DIR.parents[1])  # the README runs verl from the repo root
    loop_path = resolve_config_path(cfg.actor_rollout_ref.rollout.agent.agent_loop_config_path)
    assert loop_path == str(CONFIG_DIR / "agent_loop.yaml")
    [entry] = yaml.safe_load(Path(loop_path).read_text())
    assert entry["name"] == AGENT_NAME
    module, cls = entry["_target_"].rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[cls]), cls) is AgentEnvsAgentLoop
    VerlLoopConfig(**{k: v for k, v in entry.items() if k not in ("name", "_target_")})


# -- the tiny model through verl ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_model: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, Any]:
    """Three python-tool rows sampled by the tiny gpt-oss through verl, and the references."""
    from conftest import make_worker_fn

    from trainers.policies.hf import TransformersPolicy

    sampler = PromptSeededSampler(TransformersPolicy(tiny_model, pad_token_id=199999))
    worker, server = make_worker_fn(tiny_model_dir, sampler, response_length=96,
                                    loop={"max_turn_tokens": 6})
    rows = task_rows("python-tool", 3, seed=5, env_kwargs=PY_KWARGS)
    out = verl_batch(rows, worker, tmp_path_factory.mktemp("rows"))
    refs = [reference_episode(r, sampler, max_tokens=6) for r in rows]
    return {"out": out, "refs": refs, "rows": rows, "server": server, "model": tiny_model}


def test_batch_holds_exactly_the_in_process_episode(tiny_run: dict[str, Any]) -> None:
    out, refs = tiny_run["out"], tiny_run["refs"]
    assert len(out) == 3
    for i, ep in enumerate(refs):
        assert not ep.infra, ep.infra_error
        assert len(ep.segments) == 1 and len(ep.turns) >= 2  # multi-turn: env tokens between
        assert 0 in ep.segments[0].loss_mask and 1 in ep.segments[0].loss_mask
        last_segment_matches(unpad(out, i), ep)
        assert out.non_tensor_batch["env_task_id"][i] == ep.task_id
    # Tokens differ between rows (a batch of copies would hide misrouted rows).
    assert len({tuple(unpad(out, i)["response"]) for i in range(3)}) == 3


def test_server_got_harmony_stops_logprobs_and_the_turn_budget(tiny_run: dict[str, Any]) -> None:
    calls = tiny_run["server"].calls
    assert len(calls) == sum(len(ep.turns) for ep in tiny_run["refs"])
    for c in calls:
        sp = c["sampling_params"]
        assert sp["stop_token_ids"] == [RETURN, CALL]
        assert sp["logprobs"] is True and sp["max_tokens"] == 6
        assert sp["temperature"] == 1.0


def test_rollout_correction_weights_are_one_on_policy(tiny_run: dict[str, Any]) -> None:
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_rejection_mask

    from trainers.models.gpt_oss import build_tiny_gpt_oss

    b = tiny_run["out"].batch

    def trainer_logprobs(model: Any) -> torch.Tensor:
        # What verl's actor does: a forward pass over the padded batch, log-softmax at each
        # response position (temperature 1, so processed == raw log-probs).
        with torch.no_grad():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                           position_ids=b["position_ids"]).logits
        plen = b["prompts"].shape[1]
        rlen = b["responses"].shape[1]
        logp = torch.log_softmax(logits[:, plen - 1 : plen - 1 + rlen].float(), dim=-1)
        return logp.gather(-1, b["responses"].unsqueeze(-1)).squeeze(-1)

    mask = b["response_mask"]
    weights, new_mask, metrics = compute_rollout_correction_and_rejection_mask(
        old_log_prob=trainer_logprobs(tiny_run["model"]), rollout_log_prob=b["rollout_log_probs"],
        response_mask=mask, rollout_is="token", rollout_is_threshold=2.0,
        rollout_rs="seq_mean_k3", rollout_rs_threshold=0.05)
    w = weights.batch["rollout_is_weights"][mask.bool()]
    assert w.numel() == int(mask.sum()) > 10
    assert torch.allclose(w, torch.ones_like(w), atol=1e-4), (w.min(), w.max())
    assert torch.equal(new_mask, mask)  # nothing rejected on-policy
    assert abs(metrics["rollout_corr/kl"]) < 1e-5 and abs(metrics["rollout_corr/k3_kl"]) < 1e-5
    # The example config's bypass path, as verl's trainer runs it: old_log_probs := our sampler
    # log-probs, then the bypass_mode policy loss. On-policy the ratio is 1: nothing clipped or
    # rejected, and the loss is minus the masked mean advantage.
    from tensordict import TensorDict
    from verl.protocol import DataProto
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.trainer.ppo.rollout_corr_helper import apply_bypass_mode
    from verl.utils.config import omega_conf_to_dataclass

    cfg = compose_config([])
    data = DataProto(batch=TensorDict({"rollout_log_probs": b["rollout_log_probs"],
                                       "response_mask": mask}, batch_size=len(mask)))
    apply_bypass_mode(data, rollout_corr_config=cfg.algorithm.rollout_correction,
                      policy_loss_config=cfg.actor_rollout_ref.actor.policy_loss)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert actor.policy_loss.loss_mode == "bypass_mode"
    adv = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))
    loss, pg = get_policy_loss_fn(actor.policy_loss.loss_mode)(
        old_log_prob=data.batch["old_log_probs"], log_prob=trainer_logprobs(tiny_run["model"]),
        advantages=adv, response_mask=mask, loss_agg_mode=actor.loss_agg_mode, config=actor)
    assert float(loss) == pytest.approx(float(-(adv * mask).sum() / mask.sum()), abs=1e-4)
    assert pg["actor/pg_clipfrac"] == 0.0 and pg["rollout_corr/rollout_rs_masked_fraction"] == 0
    assert pg["rollout_corr/rollout_is_mean"] == pytest.approx(1.0, abs=1e-4)
    # The check can fail: another model's log-probs are far from the sampler's.
    other, _, _ = compute_rollout_correction_and_rejection_mask(
        old_log_prob=trainer_logprobs(build_tiny_gpt_oss(seed=1)),
        rollout_log_prob=b["rollout_log_probs"], response_mask=mask, rollout_is="token",
        rollout_is_threshold=2.0)
    assert (other.batch["rollout_is_weights"][mask.bool()] - 1).abs().max() > 1e-2


# -- scripted scenarios ----------------------------------------------------------------------------


def _digit_script(correct_for: set[int]) -> Any:
    def script(prompt: str) -> str:
        d = int(re.findall(r"Reply with the digit (\d)", prompt)[-1])
        return f"{d if d in correct_for else (d + 1) % 10}<|return|>"
    return script


def test_reward_is_carried_to_rm_scores(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    sampler = ScriptedSampler(_digit_script({0, 2, 4, 6, 8}))
    worker, _ = make_worker_fn(tiny_model_dir, sampler)
    rows = task_rows("toy-digit", 6, seed=1, env_kwargs={"fixed_target": None})
    out = verl_batch(rows, worker, tmp_path)
    refs = [reference_episode(r, sampler, max_tokens=256) for r in rows]
    rewards = [ep.reward for ep in refs]
    assert set(rewards) == {0.0, 1.0}  # both outcomes occur
    for i, ep in enumerate(refs):
        last_segment_matches(unpad(out, i), ep)
    assert out.batch["rm_scores"].sum(-1).tolist() == rewards
    assert out.non_tensor_batch["env_solved"].tolist() == rewards  # reward_extra_info
    assert "env_solved" in out.meta_info["reward_extra_keys"]


def test_copies_of_a_row_are_one_grpo_group(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    sampler = ScriptedSampler(_digit_script({0, 2, 4, 6, 8}))
    worker, _ = make_worker_fn(tiny_model_dir, sampler)
    rows = task_rows("toy-digit", 2, seed=1, env_kwargs={"fixed_target": None})
    out = verl_batch(rows, worker, tmp_path, n=3)
    assert len(out) == 6
    prompts = [tuple(unpad(out, i)["prompt"]) for i in range(6)]
    tasks = out.non_tensor_batch["env_task_id"].tolist()
    for g in range(2):  # interleaved: rows 0,0,0,1,1,1
        assert len(set(prompts[3 * g : 3 * g + 3])) == 1
        assert tasks[3 * g : 3 * g + 3] == [rows[g]["extra_info"]["task_id"]] * 3
    assert prompts[0] != prompts[3]


def test_infra_episode_comes_back_fully_masked(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    if "verl-broken-sandbox-v0" not in {s.id for s in agent_envs.list_envs()}:
        agent_envs.register("verl-broken-sandbox-v0", "verl_fakes:BrokenSandboxEnv")
    call = "<|channel|>analysis to=python code<|message|>print(6*7)<|call|>"
    sampler = ScriptedSampler(
        lambda p: call if p.count("<|call|>") == 0 else "<|channel|>final<|message|>42<|return|>")
    worker, _ = make_worker_fn(tiny_model_dir, sampler)
    rows = (task_rows("verl-broken-sandbox", 1, seed=2, env_kwargs={"max_turns": 3})
            + task_rows("python-tool", 1, seed=2, env_kwargs={"max_turns": 3}))
    out = verl_batch(rows, worker, tmp_path)
    broken, healthy = unpad(out, 0), unpad(out, 1)
    assert "sandbox is closed" in out.non_tensor_batch["env_infra_error"][0]
    assert len(broken["response"]) > 0 and not any(broken["mask"])  # tokens kept, all masked
    assert not any(broken["rm"])
    assert out.non_tensor_batch["env_infra"].tolist() == [1.0, 0.0]
    assert out.non_tensor_batch["env_infra_error"][1] is None
    assert any(healthy["mask"]) and 0 in healthy["mask"]  # tool result between the turns
    ref = reference_episode(rows[1], sampler, max_tokens=256)
    last_segment_matches(healthy, ref)
    assert ref.turns[0].tool_outcome and ref.turns[0].tool_outcome["ok"]
    # verl's rollout correction copes with the all-masked row: finite metrics, row stays out.
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_rejection_mask

    b = out.batch
    _, new_mask, metrics = compute_rollout_correction_and_rejection_mask(
        old_log_prob=b["rollout_log_probs"], rollout_log_prob=b["rollout_log_probs"],
        response_mask=b["response_mask"], rollout_is="token", rollout_is_threshold=2.0,
        rollout_rs="seq_mean_k3", rollout_rs_threshold=0.05)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert not new_mask[0].any() and torch.equal(new_mask[1], b["response_mask"][1])


_UNSURE = "<|channel|>final<|message|>I am not sure.<|return|>"
_SURE = "<|channel|>final<|message|>The answer is \\boxed{42}.<|return|>"


def _retry_script(prompt: str) -> str:
    return _UNSURE if "I am not sure." not in prompt else _SURE


def test_multi_segment_last_trains_on_the_judged_segment(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    from conftest import make_worker_fn

    sampler = ScriptedSampler(_retry_script)
    worker, _ = make_worker_fn(tiny_model_dir, sampler, loop={"multi_segment": "last"})
    rows = task_rows("python-tool", 1, seed=3, env_kwargs={"answer_retries": 1})
    out = verl_batch(rows, worker, tmp_path)
    ref = reference_episode(rows[0], sampler, max_tokens=256)
    assert len(ref.segments) == 2 and ref.verdict is not None
    row = unpad(out, 0)
    last_segment_matches(row, ref, segment=-1)
    assert row["prompt"] != ref.segments[0].prompt
    assert out.non_tensor_batch["env_segments"].tolist() == [2.0]


def test_multi_segment_error_policy_raises_with_the_fix(tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    from conftest import make_worker_fn

    worker, _ = make_worker_fn(tiny_model_dir, ScriptedSampler(_retry_script),
                               loop={"multi_segment": "error"})
    rows = task_rows("python-tool", 1, seed=3, env_kwargs={"answer_retries": 1})
    with pytest.raises(VerlAdapterError, match=re.escape("has 2 segments")) as e:
        verl_batch(rows, worker, tmp_path)
    assert "answer_retries=0" in str(e.value) and "multi_segment: last" in str(e.value)


def test_response_width_bounds_the_episode(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    call = "<|channel|>analysis to=python code<|message|>print(1)<|call|>"
    worker, server = make_worker_fn(tiny_model_dir, ScriptedSampler(lambda p: call),
                                    response_length=64)
    rows = task_rows("python-tool", 1, seed=4, env_kwargs={"max_turns": 16})
    out = verl_batch(rows, worker, tmp_path)
    row = unpad(out, 0)
    assert 0 < len(row["response"]) <= 64
    prompt0 = len(row["prompt"])
    for c in server.calls:  # each turn asked for no more than the room left
        assert len(c["prompt_ids"]) + c["sampling_params"]["max_tokens"] <= prompt0 + 64
    assert len(server.calls) < 16  # ended by the width, not by max_turns


def test_prompt_over_prompt_length_raises(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    worker, _ = make_worker_fn(tiny_model_dir, ScriptedSampler(lambda p: "1<|return|>"),
                               prompt_length=32)
    rows = task_rows("toy-digit", 1)
    with pytest.raises(VerlAdapterError, match=re.escape("rollout.prompt_length=32")) as e:
        verl_batch(rows, worker, tmp_path)
    assert "Raise data.max_prompt_length" in str(e.value)


def test_bad_env_id_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn

    worker, _ = make_worker_fn(tiny_model_dir, ScriptedSampler(lambda p: "1<|return|>"))
    rows = task_rows("toy-digit", 1)
    rows[0]["extra_info"]["env_id"] = "pyhton-tool"
    with pytest.raises(VerlAdapterError, match=re.escape("no environment 'pyhton-tool'")) as e:
        verl_batch(rows, worker, tmp_path)
    assert "Did you mean 'python-tool'" in str(e.value)


def test_data_cli_writes_rows_verls_dataset_reads(tiny_model_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_worker_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset

    assert main(["--env", "toy-digit", "--out", str(tmp_path), "--train", "3", "--test", "2",
                 "--seed", "4", "--env-kwargs", '{"fixed_target": null}']) == 0
    assert "wrote 3 train rows" in capsys.readouterr().out
    worker, _ = make_worker_fn(tiny_model_dir, ScriptedSampler(lambda p: "1<|return|>"))
    ds = RLHFDataset(str(tmp_path / "toy-digit-train.parquet"), worker.tokenizer,
                     worker.config.data)
    env = agent_envs.make("toy-digit", fixed_target=None)
    try:
        for i in range(3):
            item = ds[i]
            spec = episode_spec(item, VerlLoopConfig())
            assert item["agent_name"] == AGENT_NAME and item["index"] == i
            assert spec.env_id == "toy-digit" and dict(spec.env_kwargs) == {"fixed_target": None}
            assert env.task_source.get(spec.task_id).id == spec.task_id
            assert list(item["raw_prompt"]) == [{"role": "user", "content": spec.task_id}]
    finally:
        env.close()
    test_rows = RLHFDataset(str(tmp_path / "toy-digit-test.parquet"), worker.tokenizer,
                            worker.config.data)
    assert len(test_rows) == 2 and "/test/" in episode_spec(test_rows[0], VerlLoopConfig()).task_id
    with pytest.raises(SystemExit):
        main(["--env", "pyhton-tool", "--out", str(tmp_path)])
    assert "Did you mean 'python-tool'" in capsys.readouterr().err


def test_server_without_logprobs_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_worker_fn
    from verl_fakes import FakeVLLMServer

    class NoLogprobsServer(FakeVLLMServer):
        async def _generate(self, **kw: Any) -> Any:
            out = await super()._generate(**kw)
            return out.model_copy(update={"log_probs": None})

    worker, _ = make_worker_fn(tiny_model_dir, ScriptedSampler(lambda p: "1<|return|>"),
                               server_cls=NoLogprobsServer)
    with pytest.raises(VerlAdapterError, match=re.escape("returned 2 tokens with no log-probs")):
        verl_batch(task_rows("toy-digit", 1), worker, tmp_path)


def test_row_errors_name_the_value_and_the_fix() -> None:
    with pytest.raises(VerlAdapterError, match="no env id for this row"):
        episode_spec({"extra_info": {"task_id": "x"}}, VerlLoopConfig())
    with pytest.raises(VerlAdapterError, match=re.escape("env_kwargs is not valid JSON")):
        episode_spec({"extra_info": {"env_id": "toy-digit", "env_kwargs": "{bad"}},
                     VerlLoopConfig())
    with pytest.raises(VerlAdapterError, match=re.escape("seed must be an integer, got '7'")):
        episode_spec({"extra_info": {"env_id": "toy-digit", "seed": "7"}}, VerlLoopConfig())
    with pytest.raises(VerlAdapterError, match=re.escape("multi_segment must be 'last' or")):
        VerlLoopConfig(multi_segment="first")  # type: ignore[arg-type]
    spec = episode_spec({"extra_info": {"env_kwargs": json.dumps({"max_turns": 2}), "seed": 3}},
                        VerlLoopConfig(env_id="toy-digit", env_kwargs={"fixed_target": 4}))
    assert spec.env_id == "toy-digit" and spec.seed == 3
    assert dict(spec.env_kwargs) == {"fixed_target": 4, "max_turns": 2}
