"""TransformersPolicy on a tiny random Llama built in code (no download)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agent_envs.rollout import SampleRequest, SamplingParams
from trainers.policies.hf import TransformersPolicy, processed_logprobs

VOCAB = 201088  # the real harmony vocabulary size, so harmony stop ids exist


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    m = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # spread the logits so temperature and top-p matter measurably
        m.lm_head.weight.mul_(60.0)
    return m


def _reference_processed(logits: np.ndarray, temperature: float, top_p: float, top_k: int):  # type: ignore[no-untyped-def]
    """Independent float64 numpy version: temperature, top-k, top-p, renormalise."""
    x = logits.astype(np.float64) / temperature
    order = np.argsort(-x, kind="stable")
    keep = np.zeros_like(x, dtype=bool)
    probs = np.exp(x[order] - x[order].max())
    probs /= probs.sum()
    kmax = top_k if top_k > 0 else len(x)
    probs_k = probs[:kmax] / probs[:kmax].sum()
    mass = 0.0
    for rank, p in enumerate(probs_k):
        keep[order[rank]] = True
        mass += p
        if mass >= top_p:
            break
    y = np.where(keep, x, -np.inf)
    return y - np.logaddexp.reduce(y[keep])


@pytest.mark.parametrize(("temperature", "top_p", "top_k"), [(1.0, 1.0, -1), (0.7, 0.9, -1),
                                                            (1.3, 0.5, 50)])
def test_processed_logprobs_match_independent_reference(temperature, top_p, top_k) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 500)).astype(np.float32) * 4
    got = processed_logprobs(torch.from_numpy(logits), temperature=temperature, top_p=top_p,
                             top_k=top_k).numpy()
    for row in range(3):
        ref = _reference_processed(logits[row], temperature, top_p, top_k)
        assert np.array_equal(np.isinf(got[row]), np.isinf(ref))
        finite = np.isfinite(ref)
        np.testing.assert_allclose(got[row][finite], ref[finite], atol=2e-5)
        assert np.isclose(np.exp(got[row][finite]).sum(), 1.0, atol=1e-5)


def _fresh_forward_logprobs(model, prompt, tokens, temperature, top_p, top_k=-1, raw=False):  # type: ignore[no-untyped-def]
    full = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logits = model(input_ids=full).logits[0, len(prompt) - 1 : -1].float()
    lp = torch.log_softmax(logits, -1) if raw else processed_logprobs(
        logits, temperature=temperature, top_p=top_p, top_k=top_k)
    return lp[torch.arange(len(tokens)), torch.tensor(tokens)].numpy()


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9)])
def test_sampler_logprobs_match_fresh_forward(model, temperature, top_p) -> None:  # type: ignore[no-untyped-def]
    policy = TransformersPolicy(model, max_batch_size=4)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16], [3], [21, 22, 23]]
    reqs = [SampleRequest(prompt=p, max_tokens=10,
                          params=SamplingParams(temperature=temperature, top_p=top_p, seed=i))
            for i, p in enumerate(prompts)]
    samples = policy.sample(reqs)  # 5 requests, batch size 4: two left-padded batches
    for req, s in zip(reqs, samples):
        assert len(s.token_ids) == 10 and s.finish_reason == "length"
        ref = _fresh_forward_logprobs(model, req.prompt, s.token_ids, temperature, top_p)
        np.testing.assert_allclose(np.array(s.logprobs), ref, atol=1e-4, rtol=0)
    if temperature != 1.0:
        # Would fail if the sampler reported log-probs before temperature / top-p.
        s, req = samples[0], reqs[0]
        raw = _fresh_forward_logprobs(model, req.prompt, s.token_ids, 1.0, 1.0, raw=True)
        assert np.abs(np.array(s.logprobs) - raw).max() > 0.1


def test_seeded_requests_are_reproducible_and_differ_by_seed(model) -> None:  # type: ignore[no-untyped-def]
    policy = TransformersPolicy(model)
    mk = [SampleRequest(prompt=[1, 2, 3], max_tokens=8, params=SamplingParams(seed=s))
          for s in (1, 1, 2)]
    a, b, c = policy.sample(mk)
    assert a.token_ids == b.token_ids  # same seed, different batch rows: same tokens
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
    assert a.token_ids != c.token_ids


def test_stops_on_harmony_stop_token(model) -> None:  # type: ignore[no-untyped-def]
    """Make the greedy path hit <|call|> by swapping its output row with a greedy token's."""
    import copy

    greedy = SamplingParams(top_k=1)
    req = SampleRequest(prompt=[40, 41, 42], max_tokens=12, params=greedy)
    ref = TransformersPolicy(model).sample([req])[0].token_ids
    k = next(i for i in range(2, len(ref)) if ref.index(ref[i]) == i)
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        w = m2.lm_head.weight
        w[[ref[k], 200012]] = w[[200012, ref[k]]]
    [s] = TransformersPolicy(m2).sample([req])
    assert s.token_ids == ref[:k] + [200012]
    assert s.finish_reason == "stop"
    assert s.logprobs == [0.0] * (k + 1)  # top-k 1: the kept token has probability 1


def test_from_pretrained_mistakes_are_clear_errors(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # issue 18: --policy hf:/nonexistent was a huggingface OSError traceback.
    import re
    import socket

    from agent_envs.rollout.errors import PolicyConfigError

    with pytest.raises(PolicyConfigError, match=re.escape(
            f"model '{tmp_path / 'nope'}' is not a directory here")):
        TransformersPolicy.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(PolicyConfigError, match=re.escape(
            f"cannot load model '{tmp_path}': ")):
        TransformersPolicy.from_pretrained(str(tmp_path))  # a directory, but no checkpoint
    with socket.socket() as sock:  # a port nothing listens on: the Hub is unreachable at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(PolicyConfigError, match=re.escape(
            "model 'someone/some-model' is not a local directory, and the Hugging Face Hub "
            "cannot be reached to download it")):
        TransformersPolicy.from_pretrained("someone/some-model")
