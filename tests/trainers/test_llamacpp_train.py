"""llama.cpp wherever the other policies work: ``rollout``, ``eval`` (the bundle verifies),
``train`` (weights pushed to the server every step) and TRL's ``rollout_func``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from agent_envs.cli import main as cli_main
from agent_envs.rollout import policy_from_spec, run_rollout_cli
from agent_envs.rollout.episode import load_episodes
from tests.trainers.llamacpp_util import needs_server, tiny_gguf, tiny_model
from trainers.train import token_logprobs

pytestmark = needs_server

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_with_a_llamacpp_spec_records_the_engines_log_probs(tmp_path: Path) -> None:
    out = tmp_path / "eps.jsonl"
    summary = run_rollout_cli(
        "python-tool", f"llamacpp:{tiny_gguf('f32')},slots=4,kv=f32,threads=1", episodes=4,
        out=out,
        concurrency=4, max_tokens=24, env_kwargs={"max_turns": 2}, progress=False)
    assert summary["infra_flagged"] == 0 and summary["sampled_tokens"] > 0
    model = tiny_model(0)
    for ep in load_episodes(out):
        assert ep.policy_id.startswith("llamacpp:tiny-f32.gguf")
        seg = ep.segments[0]
        ids = torch.tensor([seg.prompt + seg.completion])
        with torch.no_grad():
            ref, _, _ = token_logprobs(model, ids, torch.ones_like(ids))
        ref = ref[0, len(seg.prompt):]
        for turn in ep.turns:
            if turn.segment != 0:
                continue
            got = seg.logprobs[turn.start:turn.end]
            assert len(got) == turn.end - turn.start > 0
            diffs = [abs(a - float(b)) for a, b in zip(got, ref[turn.start:turn.end])]
            assert max(diffs) < 5e-3


def test_eval_python_tool_with_llamacpp_completes_and_the_bundle_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent_envs import eval as ev

    # what `agent-envs eval python-tool --policy llamacpp:GGUF,... --trials 1 --limit 4
    # --max-tokens 8` runs (the whole suite is 100 tasks: minutes for a random model that
    # never stops before the token cap)
    spec = f"llamacpp:{tiny_gguf('f32')},slots=4,threads=1"
    bundle = tmp_path / "bundle"
    with policy_from_spec(spec) as policy:
        ev.run_eval("python-tool", policy, bundle, ev.EvalConfig(
            trials=1, limit=4, max_tokens=8, concurrency=8, progress=False))
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["overall"]["episodes"] == 4 and metrics["overall"]["accuracy"]["value"] == 0
    assert cli_main(["eval", "verify", str(bundle)]) == 0
    assert "OK: hashes, episodes and metrics verify" in capsys.readouterr().out


def test_training_pushes_weights_to_llama_cpp_every_step(tmp_path: Path) -> None:
    from trainers.config import load_config
    from trainers.train import Trainer

    tiny_gguf("f32")  # the converter's export (and the push template)
    cfg = load_config(ROOT / "configs" / "tiny-cpu.toml", [
        "steps=2", "rollout.tasks_per_step=2", "rollout.group_size=4",
        "algo.entropy_coef=0.01",  # a gradient even when every reward of a step is 0
        "rollout.sampler=llamacpp",
        'rollout.llamacpp_kwargs={kv_cache_type="f32", slots=4, threads=1}',
        f"logging.out_dir={tmp_path}",
        "logging.tensorboard=false", "logging.progress=false", "logging.console=false",
        "logging.plot=false", "checkpoint.save_final=false"])
    trainer = Trainer(cfg)
    try:
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        result = trainer.train()
        assert len(result.history) == 2 and trainer.policy.version == "2"
        for m in result.history:
            print({k: round(v, 3) for k, v in m.items() if k.startswith("perf/")})
            assert m["episode/infra_dropped"] == 0
            # sampler = llama.cpp on the trainer's weights of that step: kernels differ, weights not
            assert m["rollout_corr/logp_abs_diff_max"] < 5e-3
        changed = [n for n, p in trainer.model.named_parameters()
                   if p.requires_grad and not torch.equal(p, before[n])]
        assert changed
        # the server now holds the trained weights: its log-probs are the trainer's
        eps = trainer.collect(3)
        seg = eps[0].segments[0]
        ids = torch.tensor([seg.prompt + seg.completion])
        ref = trainer.score_tokens(ids)[0, len(seg.prompt):]
        assert max(abs(a - float(b)) for a, b in zip(seg.logprobs, ref)) < 5e-3
        assert eps[0].policy_version == "2"
    finally:
        trainer.close()
    assert not trainer.policy.server.running


def test_trl_rollout_func_samples_with_llama_cpp_at_the_models_current_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    from trainers.adapters import (
        EnvRollout,
        HarmonyTokenizer,
        TRLAdapterConfig,
        episode_reward,
        task_dataset,
    )
    from trainers.policies.llamacpp import LlamaCppPolicy, hf_named_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    tiny_gguf("f32")  # the converter's export (and the push template)
    model = copy.deepcopy(tiny_model(0)).train()
    llama = LlamaCppPolicy.for_model(model, kv_cache_type="f32", slots=4, threads=1)
    versions: list[str] = []
    served: dict[str, torch.nn.Module] = {}

    def factory(trainer) -> LlamaCppPolicy:  # type: ignore[no-untyped-def]
        step = str(trainer.state.global_step)
        if step != llama.version:
            with hf_named_weights(trainer.model) as weights:
                llama.load_weights(weights, version=step)
        versions.append(llama.version)
        served[step] = copy.deepcopy(trainer.model).eval()  # the weights this call samples
        return llama

    rollout = EnvRollout(TRLAdapterConfig(env_id="toy-digit", env_kwargs={"max_turns": 1},
                                          seed=3), policy_factory=factory)
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=4,
        max_steps=2, learning_rate=1e-2, logging_steps=1, beta=0.0, max_completion_length=2,
        temperature=1.0, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
        seed=0, disable_tqdm=True, dataloader_num_workers=0, activation_checkpointing=False)
    trainer = GRPOTrainer(model=model, processing_class=HarmonyTokenizer(),
                          reward_funcs=[episode_reward], rollout_func=rollout,
                          train_dataset=task_dataset("toy-digit", 8), args=args)
    try:
        trainer.train()
        assert versions == ["0", "1"]
        last = rollout.last_episodes
        assert last and all(e.policy_version == "1" for e in last)
        assert any(not torch.equal(a, b) for a, b in zip(
            served["0"].parameters(), served["1"].parameters()))
        for ep in last:  # llama.cpp's log-probs are those of the model TRL trained for a step
            seg = ep.segments[0]
            ids = torch.tensor([seg.prompt + seg.completion])
            with torch.no_grad():
                ref, _, _ = token_logprobs(served["1"], ids, torch.ones_like(ids))
            ref = ref[0, len(seg.prompt):]
            assert max(abs(a - float(b)) for a, b in zip(seg.logprobs, ref)) < 5e-3
    finally:
        rollout.close()
        llama.close()
