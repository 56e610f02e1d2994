"""The training loop on the toy env with a tiny random gpt-oss (CPU, real components).

Every run samples with a real TransformersPolicy from the trainer's own model, through
the real RolloutCollector and toy-digit env, and updates with the real loss code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainers.config import ConfigError, load_config
from trainers.train import AllowedTokensModel, Trainer, token_logprobs, train

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "configs" / "tiny-cpu.toml"
SMALL = ["rollout.tasks_per_step=2", "rollout.group_size=4", "logging.progress=false",
         "logging.console=false", "logging.tensorboard=false", "logging.plot=false"]
# A format penalty makes rewards differ inside groups from the first step (cut
# completions get -1), so advantages and gradients are nonzero at once.
PENALTY = ["env.kwargs.format_error_penalty=-1.0"]


def cfg(tmp_path: Path, *overrides: str):
    return load_config(PRESET, [f"logging.out_dir={tmp_path / 'run'}", *SMALL, *overrides])


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_on_policy_step_has_ratio_exactly_one_and_no_clipping(tmp_path: Path, algo: str) -> None:
    trainer = Trainer(cfg(tmp_path, f"algo.name={algo}", "algo.epochs=1", "algo.minibatches=1",
                          *PENALTY))
    m = trainer.step()
    assert m["train/optimizer_steps"] == 1.0
    assert m["ppo/ratio_mean"] == 1.0 and m["ppo/ratio_min"] == 1.0
    assert m["ppo/ratio_max"] == 1.0
    assert m["ppo/clip_frac"] == 0.0 and m["ppo/approx_kl"] == 0.0
    assert m["ppo/ratio_max_abs_dev"] == 0.0
    assert m["grad/norm"] > 0  # a real update happened


def test_later_epochs_are_off_policy_so_the_ratio_moves(tmp_path: Path) -> None:
    # The counterpart of the test above: the ratio metric can differ from 1.
    trainer = Trainer(cfg(tmp_path, "algo.epochs=3", "algo.minibatches=2", "algo.lr=0.05",
                          *PENALTY))
    m = trainer.step()
    assert m["train/optimizer_steps"] == 6.0
    assert m["ppo/ratio_max"] > 1.0 or m["ppo/ratio_min"] < 1.0
    assert m["ppo/ratio_max_abs_dev"] > 0.0


def test_a_step_changes_parameters_and_every_metric_is_finite(tmp_path: Path) -> None:
    trainer = Trainer(cfg(tmp_path, *PENALTY))
    before = params(trainer.model)
    m = trainer.step()
    after = params(trainer.model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and "model.layers.0.self_attn.q_proj.weight" in changed
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    for key, value in m.items():
        assert math.isfinite(value), key
    for key in ("reward/mean", "loss/policy", "ppo/clip_frac", "rollout_corr/kl",
                "rollout_corr/ess", "perf/tokens_per_s", "grad/norm", "episode/infra_dropped"):
        assert key in m, key
    assert trainer.policy.version == "1"


def test_sampler_and_trainer_agree_under_the_token_restriction(tmp_path: Path) -> None:
    trainer = Trainer(cfg(tmp_path, *PENALTY))
    episodes = trainer.collect(1)
    allowed = set(trainer.allowed.tolist())
    sampled = [t for e in episodes for s in e.segments
               for t, keep in zip(s.completion, s.loss_mask) if keep]
    assert sampled and set(sampled) <= allowed
    m = trainer.update(episodes, 1)
    # Same model, same restricted distribution: the log-probs differ by float noise only.
    assert abs(m["rollout_corr/kl"]) < 1e-5
    assert m["rollout_corr/ratio_max"] < 1.001 and m["rollout_corr/ratio_min"] > 0.999


def test_restricted_logprobs_equal_a_masked_full_softmax(tmp_path: Path) -> None:
    trainer = Trainer(cfg(tmp_path))
    allowed = trainer.allowed
    gen = torch.Generator().manual_seed(0)
    ids = allowed[torch.randint(0, len(allowed), (2, 9), generator=gen)]
    attn = torch.ones_like(ids)
    with torch.no_grad():
        logp, _, _ = token_logprobs(trainer.model, ids, attn, allowed_token_ids=allowed)
        logits = AllowedTokensModel(trainer.model, allowed.tolist())(
            input_ids=ids, attention_mask=attn).logits
    ref = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(logp[:, 1:], ref, atol=1e-5, rtol=0)
    assert bool((logits[..., 0] == float("-inf")).all())  # token 0 is not allowed



def test_the_sampler_draws_allowed_tokens_by_their_renormalised_probabilities(tmp_path) -> None:
    # TransformersPolicy samples an AllowedTokensModel on its allowed columns only (was: a
    # multinomial over all 201,088 columns per row); same distribution, same log-probs.
    import agent_envs
    from agent_envs.rollout.policy import SampleRequest, SamplingParams
    from trainers.policies.hf import TransformersPolicy

    trainer = Trainer(cfg(tmp_path))
    allowed = trainer.allowed.tolist()
    with agent_envs.make("toy-digit", fixed_target=7, max_turns=1) as env:
        prompt = [int(t) for t in env.reset(seed=0)[0]]
    policy = TransformersPolicy(AllowedTokensModel(trainer.model, allowed), max_batch_size=64)
    n = 640
    out = policy.sample([SampleRequest(prompt=prompt, max_tokens=1,
                                       params=SamplingParams(temperature=1.0, seed=100 + i))
                         for i in range(n)])
    with torch.no_grad():
        logits = trainer.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    logp = torch.log_softmax(logits[torch.tensor(allowed)].float(), -1)
    counts = torch.zeros(len(allowed))
    for s in out:
        col = allowed.index(s.token_ids[0])  # ValueError if a token outside the set came out
        counts[col] += 1
        assert abs(s.logprobs[0] - float(logp[col])) < 1e-5
    assert torch.allclose(counts / n, logp.exp(), atol=0.05), (counts / n, logp.exp())


def test_env_without_allowed_tokens_is_a_config_error(tmp_path: Path) -> None:
    import agent_envs

    def factory():
        env = agent_envs.make("toy-digit")
        env.allowed_token_ids = None  # an env that offers no restriction
        return env

    with pytest.raises(ConfigError, match="has no allowed_token_ids"):
        Trainer(cfg(tmp_path), env_factory=factory)


def test_infra_flagged_episodes_are_dropped(tmp_path: Path) -> None:
    trainer = Trainer(cfg(tmp_path, *PENALTY))
    episodes = trainer.collect(1)
    for e in episodes[:4]:
        e.infra_error = "sandbox crashed"
    m = trainer.update(episodes, 1)
    assert m["train/samples"] == 4.0
    for e in episodes:
        e.infra_error = "sandbox crashed"
    assert trainer.update(episodes, 1) == {"train/skipped": 1.0}


def test_outputs_jsonl_tensorboard_png_and_checkpoint(tmp_path: Path) -> None:
    config = load_config(PRESET, [f"logging.out_dir={tmp_path / 'run'}", "steps=2",
                                  "rollout.tasks_per_step=2", "rollout.group_size=4",
                                  "logging.progress=false", "logging.console=false",
                                  "checkpoint.every=1", *PENALTY])
    result = train(config)
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1.0, 2.0]
    assert list(out.glob("tensorboard/events.out.tfevents.*"))
    assert result.plot == out / "metrics.png"
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.checkpoint == out / "checkpoints" / "step_000002.pt"
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        "step_000001.pt", "step_000002.pt"]
    assert json.loads((out / "config.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_resume_continues_from_the_saved_step_with_identical_params(tmp_path: Path) -> None:
    common = ["rollout.tasks_per_step=2", "rollout.group_size=4", "logging.progress=false",
              "logging.console=false", "logging.tensorboard=false", "logging.plot=false",
              "checkpoint.every=2", *PENALTY]
    straight = Trainer(load_config(PRESET, [f"logging.out_dir={tmp_path / 'a'}", "steps=4",
                                            *common]))
    straight.train()

    first = Trainer(load_config(PRESET, [f"logging.out_dir={tmp_path / 'b'}", "steps=2",
                                         *common]))
    first.train()
    saved = params(first.model)
    resumed = Trainer(load_config(PRESET, [f"logging.out_dir={tmp_path / 'b'}", "steps=4",
                                           "checkpoint.resume=true", *common]))
    assert resumed.load_checkpoint(resumed.latest_checkpoint()) == 2
    for name, value in params(resumed.model).items():
        assert torch.equal(value, saved[name]), name
    result = resumed.train()
    assert result.step == 4 and [r["step"] for r in result.history] == [1.0, 2.0, 3.0, 4.0]
    rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
    # Rollout and minibatch seeds derive from (seed, step): the resumed run matches the
    # uninterrupted one.
    for name, value in params(resumed.model).items():
        torch.testing.assert_close(value, params(straight.model)[name], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_grpo_reward_rises_on_the_toy_task(tmp_path: Path) -> None:
    config = load_config(PRESET, [f"logging.out_dir={tmp_path / 'run'}", "steps=10",
                                  "logging.progress=false", "logging.console=false",
                                  "logging.tensorboard=false", "logging.plot=false",
                                  "checkpoint.save_final=false"])
    history = train(config).history
    rewards = [h["reward/mean"] for h in history]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.4, rewards


@pytest.mark.slow
def test_ppo_value_loss_falls(tmp_path: Path) -> None:
    # The policy barely moves (tiny lr); the value head must learn the mean return
    # (about -0.8: most completions are cut and penalised) from its start near 0.
    config = load_config(ROOT / "configs" / "tiny-cpu-ppo.toml", [
        f"logging.out_dir={tmp_path / 'run'}", "steps=8", "algo.lr=1e-6", "algo.value_lr=0.05",
        "rollout.tasks_per_step=4", "logging.progress=false", "logging.console=false",
        "logging.tensorboard=false", "logging.plot=false", "checkpoint.save_final=false",
        *PENALTY])
    history = train(config).history
    losses = [h["loss/value"] for h in history]
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2]), losses
