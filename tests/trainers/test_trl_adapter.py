"""TRL adapter: our envs drive TRL's GRPOTrainer with exact token ids, env masks and env rewards.

The end-to-end test trains a tiny gpt-oss for a few GRPO steps on ``toy-digit``
through ``GRPOTrainer(rollout_func=EnvRollout(...), reward_funcs=[episode_reward])``,
records what TRL's loss received, and checks it against an independent replay of
every episode in a fresh env.

The tiny model is shaped into a bigram machine (attention and MLP outputs zeroed,
embeddings and output rows set) so that a random-init model still writes digits:
after ``<|message|>`` it says ``7`` or ``8``, after a digit it stops with
``<|return|>`` or goes on with another digit (then the 2-token turn cap cuts it and
the env appends a notice: env tokens). Rewards then vary within a group.
"""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

import agent_envs
from agent_envs.rollout.episode import Episode, Segment, Turn
from trainers.adapters import (
    EnvRollout,
    HarmonyTokenizer,
    TRLAdapterConfig,
    TRLAdapterError,
    episode_reward,
    episodes_to_trl,
    sampling_from_trl_args,
    task_dataset,
)

MESSAGE, RETURN = 200008, 200002
ENV_KWARGS = {"max_turns": 2}


def _episode(segments: list[Segment], **kw: object) -> Episode:
    base: dict[str, object] = {
        "episode_id": "g0-e0", "env_id": "toy-digit-v0", "env_version": "v0",
        "task_id": "toy-digit/train/7", "group_id": 0, "index": 0, "seed": 1, "sample_seed": 2,
        "policy_id": "p", "policy_version": "0"}
    base.update(kw)
    return Episode(segments=segments, **base)  # type: ignore[arg-type]


def _segment(prompt: list[int], turns: list[tuple[list[int], list[int]]]) -> Segment:
    seg = Segment(prompt=list(prompt))
    for sampled, env in turns:
        seg.add_sampled(sampled, [-0.5] * len(sampled))
        seg.add_env(env)
    return seg


# -- pure conversion -----------------------------------------------------------------------------


def test_episodes_to_trl_keeps_tokens_mask_and_logprobs() -> None:
    seg = _segment([1, 2, 3], [([10, 11], [90, 91, 92]), ([12, RETURN], [])])
    ep = _episode([seg], reward=1.0, verdict={"correct": True, "extracted": "7", "reason": "m"},
                  turns=[Turn(segment=0, start=0, end=2, env_tokens=3),
                         Turn(segment=0, start=5, end=7)])
    out = episodes_to_trl([ep])
    assert out["prompt_ids"] == [[1, 2, 3]]
    assert out["completion_ids"] == [[10, 11, 90, 91, 92, 12, RETURN]]
    assert out["env_mask"] == [[1, 1, 0, 0, 0, 1, 1]]
    assert out["logprobs"] == [[-0.5, -0.5, 0.0, 0.0, 0.0, -0.5, -0.5]]
    assert out["env_reward"] == [1.0] and out["env_solved"] == [True]
    assert out["env_turns"] == [2] and out["env_tokens"] == [3]


def test_episodes_to_trl_infra_episode_is_unscorable_and_fully_masked() -> None:
    seg = _segment([1, 2], [([10, 11], [90])])
    ep = _episode([seg], infra_error="sandbox died", truncated=True, truncated_reason="infra")
    empty = _episode([], episode_id="g1-e0", infra_error="env raised KeyError")
    out = episodes_to_trl([ep, empty])
    assert out["env_mask"] == [[0, 0, 0], [0]]
    assert out["env_reward"] == [None, None]
    assert out["prompt_ids"][1] == [RETURN] and out["completion_ids"][1] == [RETURN]
    assert out["env_infra_error"] == ["sandbox died", "env raised KeyError"]


def test_episodes_to_trl_multi_segment_raises_or_keeps_last() -> None:
    first = _segment([1], [([10], [])])
    last = _segment([1, 10, 5], [([11, RETURN], [])])
    ep = _episode([first, last], reward=1.0)
    with pytest.raises(TRLAdapterError, match=re.escape("has 2 segments")):
        episodes_to_trl([ep])
    out = episodes_to_trl([ep], multi_segment="last")
    assert out["prompt_ids"] == [[1, 10, 5]] and out["completion_ids"] == [[11, RETURN]]


# -- reward function, config, sampling, tokenizer -----------------------------------------------


def test_episode_reward_reads_env_reward_and_logs_metrics() -> None:
    logged: dict[str, float] = {}
    rewards = episode_reward(
        ["a", "a", "a"], ["x", "y", "z"], env_reward=[1.0, 0.0, None],
        env_infra_error=[None, None, "boom"], env_solved=[True, False, False],
        env_turns=[1, 3, 0], env_tool_calls=[0, 2, 0], env_tokens=[0, 40, 0],
        log_metric=lambda k, v: logged.__setitem__(k, v))
    assert rewards == [1.0, 0.0, None]
    assert logged["env/infra_frac"] == pytest.approx(1 / 3)
    assert logged["env/solved"] == 0.5 and logged["env/turns"] == 2.0
    assert logged["env/env_tokens"] == 20.0


def test_episode_reward_without_env_column_says_what_to_pass() -> None:
    with pytest.raises(TRLAdapterError, match=re.escape("rollout_func=EnvRollout(")):
        episode_reward(["p"], ["c"], answer=["7"])


def test_config_validation_messages() -> None:
    with pytest.raises(TRLAdapterError, match=re.escape("multi_segment must be 'error' or 'last', "
                                                        "got 'first'")):
        TRLAdapterConfig(env_id="toy-digit", multi_segment="first")  # type: ignore[arg-type]
    with pytest.raises(TRLAdapterError, match=re.escape("max_turn_tokens must be >= 1")):
        TRLAdapterConfig(env_id="toy-digit", max_turn_tokens=0)


def test_sampling_from_grpo_config(tmp_path) -> None:
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), temperature=0.7, top_p=0.9, top_k=0,
                      use_cpu=True, report_to="none", num_generations=2, activation_checkpointing=False,
                      per_device_train_batch_size=2)
    params = sampling_from_trl_args(args)
    assert (params.temperature, params.top_p, params.top_k) == (0.7, 0.9, -1)
    bad = GRPOConfig(output_dir=str(tmp_path), repetition_penalty=1.2, use_cpu=True,
                     report_to="none", num_generations=2, per_device_train_batch_size=2,
                     activation_checkpointing=False)
    with pytest.raises(TRLAdapterError, match=re.escape("repetition_penalty=1.2 (use 1.0)")):
        sampling_from_trl_args(bad)


def test_harmony_tokenizer_matches_codec() -> None:
    from agent_envs.harmony import get_codec

    codec = get_codec()
    tok = HarmonyTokenizer()
    text = "héllo <|channel|>final<|message|>7<|return|>"
    ids = tok(text)["input_ids"]
    assert ids == codec.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "héllo final7"
    assert (tok.pad_token_id, tok.eos_token_id) == (199999, RETURN)
    assert tok.convert_tokens_to_ids("<|return|>") == RETURN


def test_rollout_rejects_prompts_that_are_not_task_ids() -> None:
    rollout = EnvRollout(TRLAdapterConfig(env_id="toy-digit", env_kwargs=ENV_KWARGS))
    try:
        with pytest.raises(TRLAdapterError, match=re.escape("is not a task id of env 'toy-digit'")):
            rollout(["What is 2+2?"], trainer=None)
        with pytest.raises(TRLAdapterError, match=re.escape("must be task ids (str), got list")):
            rollout([[{"role": "user", "content": "hi"}]], trainer=None)
    finally:
        rollout.close()


def test_task_dataset_rows_are_env_task_ids() -> None:
    ds = task_dataset("toy-digit", 3, env_kwargs={"fixed_target": None})
    env = agent_envs.make("toy-digit", fixed_target=None)
    try:
        for task_id in ds["prompt"]:
            assert env.task_source.get(task_id).id == task_id
    finally:
        env.close()
    assert len(ds) == 3


# -- end to end: GRPOTrainer on toy-digit ---------------------------------------------------------


def _bigram_gpt_oss() -> torch.nn.Module:
    """A tiny gpt-oss whose next token depends only on the current one (see module docstring)."""
    from agent_envs.harmony import get_codec
    from trainers.models.gpt_oss import build_tiny_gpt_oss

    model = build_tiny_gpt_oss(seed=0)
    digits = [get_codec().encode(d)[0] for d in ("7", "8")]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.self_attn.o_proj.bias.zero_()
            layer.mlp.experts.down_proj.zero_()
            layer.mlp.experts.down_proj_bias.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        e0, e1 = torch.zeros(emb.shape[1]), torch.zeros(emb.shape[1])
        e0[0], e1[1] = 1.0, 1.0
        emb[MESSAGE] = 10 * e0
        for d in digits:
            emb[d] = 10 * e1
            head[d] = 4 * e0 + 4 * e1
        # The normed hidden state is 8 * e_k: after a digit, <|return|> beats each digit by
        # ln 2, so P(stop) = 1/2 and the other half of turns is cut by the 2-token cap.
        head[RETURN] = (4 + math.log(2) / 8) * e1
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    from trl import GRPOConfig, GRPOTrainer

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model = _bigram_gpt_oss()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rollout = EnvRollout(TRLAdapterConfig(env_id="toy-digit", env_kwargs=ENV_KWARGS, seed=3))
    calls: list[tuple[list[Episode], dict]] = []

    def recording_rollout(prompts, trainer):  # type: ignore[no-untyped-def]
        out = rollout(prompts, trainer)
        calls.append((list(rollout.last_episodes), out))
        return out

    received: list[dict[str, torch.Tensor]] = []

    class RecordingGRPOTrainer(GRPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            batch = {k: v.detach().clone() for k, v in inputs.items()
                     if isinstance(v, torch.Tensor)}
            batch["model_logps"] = _model_logps(model, batch)  # weights that sampled this batch
            received.append(batch)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo")), per_device_train_batch_size=4,
        num_generations=4, max_steps=2, learning_rate=1e-2, logging_steps=1, beta=0.0,
        max_completion_length=2, temperature=1.0, report_to="none", use_cpu=True, bf16=False,
        activation_checkpointing=False, save_strategy="no", seed=0, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = RecordingGRPOTrainer(
        model=model, processing_class=HarmonyTokenizer(), reward_funcs=[episode_reward],
        rollout_func=recording_rollout, train_dataset=task_dataset("toy-digit", 8),
        args=args)
    try:
        trainer.train()
    finally:
        rollout.close()
        mp.undo()
    return {"model": model, "before": before, "calls": calls, "received": received,
            "log": trainer.state.log_history, "trainer": trainer}


def _model_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-prob of each completion token under ``model``, one unpadded row at a time."""
    out = torch.zeros(batch["completion_ids"].shape, dtype=torch.float32)
    with torch.no_grad():
        for i in range(out.shape[0]):
            prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()]
            keep = batch["completion_mask"][i].bool()
            completion = batch["completion_ids"][i][keep]
            ids = torch.cat([prompt, completion]).unsqueeze(0)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
            lps = torch.log_softmax(logits, -1).gather(1, completion.unsqueeze(1)).squeeze(1)
            out[i, :len(completion)] = lps
    return out


def _replay(ep: Episode) -> tuple[list[int], list[int], float]:
    """Re-run an episode's actions in a fresh env: (prompt + completion, mask, reward)."""
    env = agent_envs.make("toy-digit", **ENV_KWARGS)
    try:
        obs, _ = env.reset(seed=ep.seed, options={"task_id": ep.task_id})
        prompt = [int(t) for t in obs]
        seg = ep.segments[0]
        tokens, mask, reward = list(prompt), [], 0.0
        for turn in ep.turns:
            action = seg.completion[turn.start:turn.end]
            obs, reward, terminated, truncated, info = env.step(action)
            assert not info["new_segment"]
            obs = [int(t) for t in obs]
            assert obs[:len(tokens) + len(action)] == tokens + action  # prefix extension
            appended = obs[len(tokens) + len(action):]
            assert len(appended) == info["env_token_count"]
            if terminated or truncated:
                # What the env appends after the last action (a cut-off notice) is never trained on.
                return tokens + action, mask + [1] * len(action), float(reward)
            mask += [1] * len(action) + [0] * len(appended)
            tokens = obs
        raise AssertionError(f"episode {ep.episode_id} replayed without ending")
    finally:
        env.close()


def _rows(batch: dict[str, torch.Tensor]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    rows = []
    for i in range(batch["prompt_ids"].shape[0]):
        prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
        keep = batch["completion_mask"][i].bool()
        completion = batch["completion_ids"][i][keep].tolist()
        mask = batch["tool_mask"][i][keep].tolist()
        rows.append((tuple(prompt + completion), tuple([0] * len(prompt) + mask)))
    return sorted(rows)


def test_trl_receives_exactly_the_env_tokens_and_env_mask(trained) -> None:
    calls, received = trained["calls"], trained["received"]
    assert len(calls) == 2 and len(received) == 2  # one generation + one loss per step
    saw_env_tokens = 0
    for (episodes, _), batch in zip(calls, received):
        assert "tool_mask" in batch, "TRL dropped the env mask"
        expected = []
        for ep in episodes:
            assert not ep.infra, ep.infra_error
            tokens, mask, _ = _replay(ep)
            prompt_len = len(ep.segments[0].prompt)
            expected.append((tuple(tokens), tuple([0] * prompt_len + mask)))
            saw_env_tokens += mask.count(0)
        assert _rows(batch) == sorted(expected)
    assert saw_env_tokens > 0, "no episode had env tokens; the masking check proved nothing"


def test_trl_rewards_are_the_env_rewards(trained) -> None:
    step_logs = [h for h in trained["log"] if "rewards/episode_reward/mean" in h]
    assert len(step_logs) == 2
    for (episodes, out), log in zip(trained["calls"], step_logs):
        replayed = [_replay(ep)[2] for ep in episodes]
        assert out["env_reward"] == replayed
        assert log["rewards/episode_reward/mean"] == pytest.approx(sum(replayed) / len(replayed))
    all_rewards = [r for _, out in trained["calls"] for r in out["env_reward"]]
    assert 0.0 < sum(all_rewards) < len(all_rewards), "no reward variance: GRPO learns nothing"


def test_training_changed_parameters_and_metrics_are_finite(trained) -> None:
    model, before = trained["model"], trained["before"]
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "lm_head.weight" in changed
    losses = [h["loss"] for h in trained["log"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    for h in trained["log"]:
        for key in ("env/solved", "env/turns", "env/env_tokens", "entropy"):
            if key in h:
                assert math.isfinite(h[key]), (key, h)
    assert any("env/env_tokens" in h for h in trained["log"])


def test_trl_receives_the_sampler_logprobs_aligned_with_the_tokens(trained) -> None:
    # On-policy (temperature 1, no top-k/p): the sampler's processed log-prob of each sampled
    # token equals the trained model's log-prob of it; env tokens carry 0.0 and are masked.
    for batch in trained["received"]:
        mask = (batch["completion_mask"] * batch["tool_mask"]).bool()
        sampler = batch["sampling_per_token_logps"]
        assert torch.allclose(sampler[mask], batch["model_logps"][mask], atol=1e-4)
        assert torch.all(sampler[batch["completion_mask"].bool() & ~mask] == 0.0)


def test_rollout_keeps_prompt_order_with_uneven_groups_and_restores_train_mode(trained) -> None:
    trainer = trained["trainer"]
    kwargs = {"fixed_target": None, "max_turns": 2}
    rollout = EnvRollout(TRLAdapterConfig(env_id="toy-digit", env_kwargs=kwargs))
    prompts = ["toy-digit/train/3", "toy-digit/train/5", "toy-digit/train/3"]
    trainer.model.train()
    try:
        out = rollout(prompts, trainer)
    finally:
        rollout.close()
    assert trainer.model.training
    assert [ep.task_id for ep in rollout.last_episodes] == prompts
    assert out["env_task_id"] == prompts
    env = agent_envs.make("toy-digit", **kwargs)
    try:
        for task_id, prompt_ids in zip(prompts, out["prompt_ids"]):
            obs, _ = env.reset(options={"task_id": task_id})
            assert prompt_ids == [int(t) for t in obs]
    finally:
        env.close()
    assert len({tuple(ids) for ids in out["prompt_ids"]}) == 2  # the two tasks differ
