"""On-policy exactness of the whole loop (collector -> trainer), asserted with ``==``.

The sampler is a real ``TransformersPolicy`` on the trainer's own model object (shared
weights and kernels), driven by the real ``RolloutCollector`` on the toy-digit env; the
update is the real ``Trainer.update`` with ``ppo_loss_with_correction`` and the token-TIS
rollout correction. What is exact, and why:

* ``pi_theta / pi_old`` in the first epoch: ``logp_old`` is the detached ``logp_new`` of
  the same forward, so every ratio is exactly 1 (``ppo/ratio_max_abs_dev == 0.0``), with
  any number of minibatches and microbatches.
* ``pi_old / pi_rollout`` in the first minibatch: exactly 1 when the sampler's recorded
  log-probs are what the trainer computes. The KV-cached sampler's are not (float noise,
  measured below); with ``exact_sampler_logprobs=True`` the sampler re-scores each
  completion with the trainer's own function on the unpadded sequence, and the trainer
  sees the same unpadded sequence when its microbatches hold one sample each.
* Gradient accumulation: k microbatches give one pass's gradient up to float summation
  order (a tight tolerance, not equality: the sums run in a different order).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainers.config import ConfigError, load_config
from trainers.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "configs" / "tiny-cpu.toml"
# 2 tasks x 4 = 8 single-turn episodes; the format penalty makes rewards differ inside a
# group at once (cut completions get -1), so advantages and gradients are nonzero.
BASE = ["rollout.tasks_per_step=2", "rollout.group_size=4", "logging.progress=false",
        "logging.console=false", "logging.tensorboard=false", "logging.plot=false",
        "env.kwargs.format_error_penalty=-1.0", "algo.epochs=1"]
EPISODES = 8


def trainer(tmp_path: Path, *overrides: str, exact: bool = True) -> Trainer:
    config = load_config(PRESET, [f"logging.out_dir={tmp_path / 'run'}", *BASE, *overrides])
    return Trainer(config, exact_sampler_logprobs=exact)


def mask_of(t: Trainer) -> torch.Tensor:
    return t.last_update_tensors["loss_mask"] != 0


@pytest.mark.parametrize("algo,lora,attn", [
    ("grpo", False, "eager"), ("grpo", True, "eager"), ("ppo", False, "eager"),
    ("ppo", True, "eager"), ("grpo", False, "fused_sinks"), ("ppo", True, "fused_sinks")])
def test_ratio_and_correction_weights_are_exactly_one(tmp_path: Path, algo: str,
                                                      lora: bool, attn: str) -> None:
    # One minibatch of 8 samples, accumulated over 8 microbatches of one sample each.
    t = trainer(tmp_path, f"algo.name={algo}", f"model.lora={str(lora).lower()}",
                f"model.attn_implementation={attn}", "algo.minibatches=1",
                f"algo.microbatches={EPISODES}")
    m = t.step()
    assert m["train/optimizer_steps"] == 1.0 and m["train/microbatches"] == EPISODES
    assert m["ppo/ratio_max_abs_dev"] == 0.0
    assert m["ppo/ratio_min"] == 1.0 and m["ppo/ratio_max"] == 1.0
    assert m["ppo/clip_frac"] == 0.0
    assert m["rollout_corr/is_weight_max_abs_dev"] == 0.0
    assert m["rollout_corr/logp_abs_diff_max"] == 0.0
    assert m["rollout_corr/rejected_token_frac"] == 0.0
    # Token by token: the sampler's recorded log-probs ARE pi_old.
    tensors, sel = t.last_update_tensors, mask_of(t)
    assert int(sel.sum()) >= EPISODES
    assert torch.equal(tensors["logp_old"][sel], tensors["logp_rollout"][sel])
    assert m["grad/norm"] > 0  # a real update ran
    # The re-scoring replaced KV-cached values that differed by float noise only.
    assert 0.0 <= t.policy.last_rescore_max_abs_diff < 1e-4


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_every_first_visit_ratio_is_one_but_later_minibatches_are_off_the_sampler(
        tmp_path: Path, algo: str) -> None:
    # Two optimizer steps (minibatches) of 4 microbatches each.
    t = trainer(tmp_path, f"algo.name={algo}", "algo.minibatches=2", "algo.microbatches=4",
                "algo.lr=0.05")
    m = t.step()
    assert m["train/optimizer_steps"] == 2.0 and m["train/microbatches"] == 8.0
    log = t.last_update_log
    assert [r["minibatch"] for r in log] == [0] * 4 + [1] * 4
    assert all(len(r["samples"]) == 1 for r in log)
    # pi_theta / pi_old: exactly 1 at every token of every microbatch (all first visits).
    assert all(r["metrics"]["ppo/ratio_max_abs_dev"] == 0.0 for r in log)
    # pi_old / pi_rollout: exactly 1 before the first optimizer step ...
    first = [r["metrics"]["rollout_corr/is_weight_max_abs_dev"] for r in log[:4]]
    assert first == [0.0] * 4
    # ... and not after it: the second minibatch's pi_old is the updated policy.
    second = [r["metrics"]["rollout_corr/logp_abs_diff_max"] for r in log[4:]]
    assert max(second) > 1e-4


def test_kv_cached_sampler_logprobs_are_close_but_not_claimed_exact(tmp_path: Path) -> None:
    # Without re-scoring, the KV-cached log-probs differ from the trainer's full forward
    # by float noise: the metric reports it (measured ~1e-6 on CPU float32).
    t = trainer(tmp_path, "algo.minibatches=1", f"algo.microbatches={EPISODES}", exact=False)
    m = t.step()
    assert m["ppo/ratio_max_abs_dev"] == 0.0  # this one stays exact
    assert m["rollout_corr/logp_abs_diff_max"] < 1e-4
    tensors, sel = t.last_update_tensors, mask_of(t)
    diff = (tensors["logp_old"][sel] - tensors["logp_rollout"][sel]).abs()
    assert float(diff.max()) == pytest.approx(m["rollout_corr/logp_abs_diff_max"], abs=1e-12)


def test_exact_sampler_logprobs_needs_the_transformers_sampler_without_nucleus(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exact_sampler_logprobs=True needs"):
        trainer(tmp_path, "rollout.top_p=0.9")


def grads(t: Trainer) -> dict[str, torch.Tensor]:
    named = dict(t.model.named_parameters())
    if t.value_head is not None:
        named.update({f"value_head.{n}": p for n, p in t.value_head.named_parameters()})
    return {n: p.grad.detach().clone() for n, p in named.items()
            if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("algo,agg", [("grpo", "token-mean"), ("grpo", "seq-mean-token-mean"),
                                      ("grpo", "seq-mean-token-sum-norm"),
                                      ("ppo", "token-mean")])
def test_microbatches_give_one_pass_gradient(tmp_path: Path, algo: str, agg: str) -> None:
    # No clipping of the global norm (it would rescale both); PPO without per-chunk
    # advantage whitening (whitening is per chunk by design).
    common = [f"algo.name={algo}", f"algo.agg_mode={agg}", "algo.max_grad_norm=1e9",
              "algo.normalize_advantages=false", "algo.entropy_coef=0.01"]
    one = trainer(tmp_path / "one", *common, "algo.microbatches=1", exact=False)
    many = trainer(tmp_path / "many", *common, "algo.microbatches=3", exact=False)
    for (name, a), (_, b) in zip(one.model.named_parameters(), many.model.named_parameters()):
        assert torch.equal(a, b), name  # same seeded initialisation
    episodes = one.collect(1)
    m_one = one.update(copy.deepcopy(episodes), 1)
    m_many = many.update(copy.deepcopy(episodes), 1)
    assert m_one["train/microbatches"] == 1.0 and m_many["train/microbatches"] == 3.0
    g_one, g_many = grads(one), grads(many)
    assert g_one.keys() == g_many.keys() and g_one
    assert any(float(g.abs().max()) > 0 for g in g_one.values())
    for name, g in g_one.items():
        # Float32 sums in another order: equal to ~1e-6 relative, not bit for bit
        # (measured: 2e-6 of the largest entry at most).
        scale = float(g.abs().max())
        torch.testing.assert_close(g_many[name], g, rtol=1e-5, atol=1e-5 * scale + 1e-12,
                                   msg=name)
    assert m_many["grad/norm"] == pytest.approx(m_one["grad/norm"], rel=1e-5)
    # The chunks really differ in size (3 chunks of 8 samples), so a plain average of
    # per-chunk means would not have matched.
    sizes = [len(r["samples"]) for r in many.last_update_log]
    assert sorted(sizes) == [2, 3, 3]


def test_transformers_policy_rescoring_replaces_the_kv_cached_logprobs() -> None:
    from agent_envs.rollout.errors import PolicyConfigError
    from agent_envs.rollout.policy import SampleRequest, SamplingParams
    from trainers.models import build_tiny_gpt_oss, tiny_gpt_oss_config
    from trainers.policies.hf import TransformersPolicy
    from trainers.train import token_logprobs

    model = build_tiny_gpt_oss(tiny_gpt_oss_config())
    seen: list[list[int]] = []

    def score(ids: torch.Tensor) -> torch.Tensor:
        seen.append(ids[0].tolist())
        logp, _, _ = token_logprobs(model, ids, torch.ones_like(ids))
        return logp

    plain = TransformersPolicy(model, pad_token_id=199999, seed=3)
    exact = TransformersPolicy(model, pad_token_id=199999, seed=3, score_fn=score)
    prompts = [[200006, 1, 2, 3], [200006, 4, 5, 6, 7, 8, 9]]  # different lengths: padding
    reqs = [SampleRequest(prompt=p, max_tokens=5, params=SamplingParams(seed=11 + i))
            for i, p in enumerate(prompts)]
    a, b = plain.sample(reqs), exact.sample(reqs)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]  # same draws
    # The scorer saw each prompt + completion alone (no padding), and its values are used.
    assert seen == [p + s.token_ids for p, s in zip(prompts, b)]
    for p, s in zip(prompts, b):
        ids = torch.tensor([p + s.token_ids])
        with torch.no_grad():
            ref, _, _ = token_logprobs(model, ids, torch.ones_like(ids))
        assert torch.equal(torch.tensor(s.logprobs), ref[0, len(p):])
    kv_gap = max(abs(x - y) for sa, sb in zip(a, b) for x, y in zip(sa.logprobs, sb.logprobs))
    assert exact.last_rescore_max_abs_diff == pytest.approx(kv_gap, abs=1e-12)
    assert kv_gap < 1e-4
    with pytest.raises(PolicyConfigError, match="re-scores the full distribution"):
        exact.sample([SampleRequest(prompt=prompts[0], max_tokens=2,
                                    params=SamplingParams(top_p=0.5))])
