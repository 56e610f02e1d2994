"""``LlamaCppPolicy`` against the real ``llama-server`` on the tiny gpt-oss: its tokenizer
against openai-harmony on every env's prompts, its processed log-probs against the
trainer's recomputation, stops, budgets, seeds, slots, weight pushes, and the policy in
rollout and eval."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from agent_envs.harmony import RETURN, load_encoding
from agent_envs.rollout import (
    PolicyConfigError,
    PolicyRequestError,
    PolicyServerError,
    policy_from_spec,
)
from agent_envs.rollout.policy import SampleRequest, SamplingParams
from tests.trainers.llamacpp_util import needs_server, tiny_gguf, tiny_model, tmp_root
from trainers.policies.llamacpp import LlamaCppPolicy, LlamaCppServerConfig, parse_llamacpp_spec
from trainers.train import token_logprobs

pytestmark = needs_server

ROOT = Path(__file__).resolve().parents[2]

# One thread: llama.cpp's worker threads spin at barriers, which crawls on a busy 2-core box.
SERVER = LlamaCppServerConfig(slots=2, ctx_size=4096, kv_cache_type="f32", threads=1)


@pytest.fixture(scope="module")
def policy() -> Iterator[LlamaCppPolicy]:
    with LlamaCppPolicy(tiny_gguf("f32"), server=SERVER) as p:
        yield p


def prompt(env_id: str = "python-tool", seed: int = 0) -> list[int]:
    import agent_envs

    env = agent_envs.make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        return list(obs)
    finally:
        env.close()


def trainer_logprobs(model: torch.nn.Module, prompt_ids: list[int], completion: list[int],
                     *, temperature: float = 1.0, allowed: list[int] | None = None
                     ) -> list[float]:
    """The trainer's log-probs of ``completion`` after ``prompt_ids`` (its own function)."""
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        logp, _, _ = token_logprobs(
            model, ids, torch.ones_like(ids), temperature=temperature,
            allowed_token_ids=None if allowed is None else torch.tensor(sorted(allowed)))
    return logp[0, len(prompt_ids):].tolist()


# -- the tokenizer ------------------------------------------------------------------------------


def test_llama_cpp_tokenizes_every_envs_rendered_prompts_like_openai_harmony(
        policy: LlamaCppPolicy) -> None:
    import agent_envs
    from agent_envs.oracle import Oracle

    enc = load_encoding()
    checked = []
    for spec in agent_envs.list_envs():
        env = agent_envs.make(spec.id)
        try:
            obs, _ = env.reset(seed=3)
            contexts, oracle, done = [list(obs)], Oracle(), False
            while not done:  # an oracle episode: tool calls and tool results in the context
                action = oracle.act(obs, env.task)
                contexts.append(list(obs) + list(action))
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
        finally:
            env.close()
        for n, ids in enumerate((contexts[0], contexts[-1])):
            text = enc.decode_utf8(ids)
            got = httpx.post(f"{policy.url}/tokenize", json={
                "content": text, "add_special": False, "parse_special": True}, timeout=60)
            assert got.json()["tokens"] == enc.encode(text, allowed_special="all"), spec.id
            if n == 0:  # what the env rendered (the last context holds the oracle's own
                assert got.json()["tokens"] == [int(t) for t in ids]  # token choices)
        checked.append((spec.id, len(contexts[-1])))
    assert len(checked) == len(agent_envs.list_envs()) >= 7
    assert max(n for _, n in checked) > 1000  # long multi-turn contexts were among them


# -- sampling -----------------------------------------------------------------------------------


def test_samples_carry_log_probs_that_match_the_trainers_recomputation(
        policy: LlamaCppPolicy) -> None:
    p = prompt()
    reqs = [SampleRequest(prompt=p, max_tokens=24, params=SamplingParams(seed=s))
            for s in range(3)]
    samples = policy.sample(reqs)
    model = tiny_model(0)
    for s in samples:
        assert s.finish_reason == "length" and len(s.token_ids) == 24 == len(s.logprobs)
        ref = trainer_logprobs(model, p, s.token_ids)
        diff = max(abs(a - b) for a, b in zip(s.logprobs, ref))
        assert diff < 5e-3, diff  # same weights (f32 GGUF, f32 KV): only kernel rounding


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.7, 5, 1.0), (1.3, -1, 0.9)])
def test_log_probs_are_those_of_the_processed_distribution(
        policy: LlamaCppPolicy, temperature: float, top_k: int, top_p: float) -> None:
    p = prompt(seed=1)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=7)
    (s,) = policy.sample([SampleRequest(prompt=p, max_tokens=12, params=params)])
    model = tiny_model(0)
    ids = torch.tensor([p + s.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(p) - 1:-1].double() / temperature
    for pos, (tok, lp) in enumerate(zip(s.token_ids, s.logprobs)):
        probs = logits[pos].softmax(-1)
        order = probs.argsort(descending=True)
        keep = order[:top_k] if top_k > 0 else order
        if top_p < 1.0:  # the smallest prefix whose mass reaches top_p
            cum = probs[keep].cumsum(0)
            keep = keep[: int((cum < top_p).sum()) + 1]
        assert tok in keep.tolist(), pos
        expected = math.log(float(probs[tok] / probs[keep].sum()))
        assert abs(lp - expected) < 5e-3, (pos, lp, expected)


def test_stops_at_return_and_call_with_their_log_prob(policy: LlamaCppPolicy) -> None:
    enc = load_encoding()
    digits = [enc.encode(str(d), allowed_special="all")[0] for d in range(10)]
    allowed = [*digits, RETURN]
    restricted = LlamaCppPolicy(url=policy.url, allowed_token_ids=allowed)
    p = prompt("toy-digit")
    samples = restricted.sample([SampleRequest(prompt=p, max_tokens=200,
                                               params=SamplingParams(seed=s))
                                 for s in range(2)])
    model = tiny_model(0)
    for s in samples:
        assert set(s.token_ids) <= set(allowed)
        assert s.finish_reason == "stop" and s.token_ids[-1] == RETURN
        assert RETURN not in s.token_ids[:-1]
        ref = trainer_logprobs(model, p, s.token_ids, allowed=allowed)
        assert max(abs(a - b) for a, b in zip(s.logprobs, ref)) < 5e-3
    # when a token outside the set outscores the boost the request is made again with every
    # other token banned by name (here forced with a negative boost)
    import trainers.policies.llamacpp as llamacpp_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llamacpp_module, "ALLOWED_BOOST", -64.0)
        (forced,) = restricted.sample([SampleRequest(prompt=p, max_tokens=3,
                                                     params=SamplingParams(seed=5))])
    assert set(forced.token_ids) <= set(allowed)
    ref = trainer_logprobs(model, p, forced.token_ids, allowed=allowed)
    assert max(abs(a - b) for a, b in zip(forced.logprobs, ref)) < 5e-3
    # an extra stop id (a digit) cuts the completion there, the digit included
    seven = digits[7]
    cut = restricted.sample([SampleRequest(prompt=p, max_tokens=200, params=SamplingParams(seed=s),
                                           stop_token_ids=(seven, RETURN, 200012))
                             for s in range(2)])
    for s in cut:
        assert s.finish_reason == "stop" and s.token_ids[-1] in (seven, RETURN)
        assert seven not in s.token_ids[:-1] and len(s.logprobs) == len(s.token_ids)


def test_tokens_that_end_inside_a_utf8_character_get_their_log_probs_too(
        policy: LlamaCppPolicy) -> None:
    """llama-server reports no probability for a token after which the text ends inside a
    character; the policy finds those positions and scores them again."""
    from gguf.vocab import bytes_to_unicode

    from trainers.export.gguf_weights import read_vocab
    from trainers.policies.llamacpp import _utf8_complete

    tokens, _ = read_vocab(tiny_gguf("f32"))
    byte_token = {b: tokens.index(ch) for b, ch in bytes_to_unicode().items()
                  if b in (0xE2, 0x80, 0x61)}
    p, model, lead = prompt("toy-digit"), tiny_model(0), byte_token[0xE2]
    # "a", a 3-byte lead and a continuation byte; then also <|return|> (a stop right after a
    # lead byte leaves the server with no probability at all to report)
    for allowed in ([*byte_token.values()], [*byte_token.values(), RETURN]):
        restricted = LlamaCppPolicy(url=policy.url, allowed_token_ids=allowed)
        samples = restricted.sample([SampleRequest(prompt=p, max_tokens=8,
                                                   params=SamplingParams(seed=s))
                                     for s in range(3)])
        if RETURN not in allowed:
            assert any(lead in s.token_ids[:-1] for s in samples)  # ended mid-character
        for s in samples:
            assert s.finish_reason in ("stop", "length") and len(s.logprobs) == len(s.token_ids)
            ref = trainer_logprobs(model, p, s.token_ids, allowed=allowed)
            assert max(abs(a - b) for a, b in zip(s.logprobs, ref)) < 5e-3
    assert not _utf8_complete(b"a\xe2") and not _utf8_complete(b"\xe2\x80")
    assert _utf8_complete(b"\xe2\x80\x80") and _utf8_complete(b"")


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rescoring_a_position_gives_the_processed_log_prob_of_any_token(
        policy: LlamaCppPolicy, temperature: float) -> None:
    p = prompt(seed=5)
    req = SampleRequest(prompt=p, max_tokens=1, params=SamplingParams(temperature=temperature))
    model = tiny_model(0)
    ids = torch.tensor([p])
    with torch.no_grad():
        expected = torch.log_softmax(model(input_ids=ids).logits[0, -1].double() / temperature,
                                     -1)

    async def rescore(tokens: list[int]) -> list[float]:
        async with httpx.AsyncClient(timeout=120) as client:
            return [await policy._rescore(client, policy.url + "/completion", req, [], t)
                    for t in tokens]

    tokens = [12345, int(expected.argmax()), 200002, 77]
    for tok, got in zip(tokens, asyncio.run(rescore(tokens))):
        assert abs(got - float(expected[tok])) < 5e-3, tok


def test_a_seed_reproduces_a_sample_and_slots_serve_concurrent_requests(
        policy: LlamaCppPolicy) -> None:
    p = prompt(seed=2)
    one = SampleRequest(prompt=p, max_tokens=12, params=SamplingParams(seed=11))
    a, = policy.sample([one])
    b, = policy.sample([one])
    # the same tokens; the second run reuses the cached prompt, so the prompt's last token is
    # computed in a batch of one instead of the whole prompt's: log-probs agree to rounding
    assert a.token_ids == b.token_ids
    assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-5
    many = policy.sample([SampleRequest(prompt=p, max_tokens=6, params=SamplingParams(seed=s))
                          for s in range(6)])  # 6 requests through 2 slots
    assert all(s.finish_reason == "length" and len(s.token_ids) == 6 for s in many)
    assert len({tuple(s.token_ids) for s in many}) > 1

    async def both() -> list:
        return await asyncio.gather(policy.asample([one]), policy.asample([one]))

    assert all(r[0].token_ids == a.token_ids for r in asyncio.run(both()))


def test_a_prompt_past_the_context_fails_that_sample_with_the_fix(policy: LlamaCppPolicy) -> None:
    ok, too_long = policy.sample([
        SampleRequest(prompt=prompt(), max_tokens=4),
        SampleRequest(prompt=[200006] * 5000, max_tokens=4)])
    assert ok.finish_reason == "length"
    assert too_long.finish_reason == "error"
    with pytest.raises(PolicyRequestError, match="ctx_size"):
        too_long.raise_for_error()


# -- configuration ------------------------------------------------------------------------------


def test_specs_and_bad_configurations(policy: LlamaCppPolicy, tmp_path: Path) -> None:
    assert parse_llamacpp_spec("m.gguf,slots=8,ctx=16384,kv=f32") == (
        "m.gguf", {"slots": 8, "ctx_size": 16384, "kv_cache_type": "f32"})
    with pytest.raises(PolicyConfigError, match="did you mean 'slots'"):
        parse_llamacpp_spec("m.gguf,slot=8")
    with pytest.raises(PolicyConfigError, match="does not exist.*agent-envs export gguf"):
        policy_from_spec(f"llamacpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(PolicyConfigError, match="exactly one of model="):
        LlamaCppPolicy()
    with pytest.raises(PolicyServerError, match="is a llama-server running there"):
        LlamaCppPolicy(url="http://127.0.0.1:9")
    attached = policy_from_spec(f"llamacpp:{policy.url}")
    assert attached.slots == SERVER.slots and attached.server is None
    (s,) = attached.sample([SampleRequest(prompt=prompt(), max_tokens=3)])
    assert len(s.token_ids) == 3


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(PolicyServerError, match="llama-server exited with code .* while "
                                                "starting on"):
        LlamaCppPolicy(bad, server=LlamaCppServerConfig(startup_timeout_s=60))


def test_a_server_left_open_stops_when_its_python_exits(tmp_path: Path) -> None:
    # what a CLI run or a script that never closes its policy does: the server must not
    # outlive the interpreter that started it
    script = (
        "import sys\n"
        "from trainers.policies.llamacpp_server import LlamaCppServer, LlamaCppServerConfig\n"
        "s = LlamaCppServer(sys.argv[1], LlamaCppServerConfig(slots=1, ctx_size=256, "
        "threads=1))\n"
        "s.start()\n"
        "print(s._proc.pid, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tiny_gguf("f32"))],
                          check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])

    def alive() -> bool:  # a zombie waiting for init to reap it counts as stopped
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 15
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(), f"llama-server {pid} outlived the python that started it"


# -- weights ------------------------------------------------------------------------------------


def test_pushed_weights_are_what_the_server_samples_from() -> None:
    p = prompt(seed=4)
    tiny_gguf("f32")  # the converter's export (and the push template)
    pol = LlamaCppPolicy.for_model(tiny_model(0), work_dir=tmp_root() / "push",
                                   kv_cache_type="f32", slots=1, threads=1)
    try:
        req = [SampleRequest(prompt=p, max_tokens=8, params=SamplingParams(seed=3))]
        (before,) = pol.sample(req)
        first = pol._pushed
        other = tiny_model(1)
        pol.load_weights(other.named_parameters(), version="1")
        assert pol.version == "1" and first is not None and not first.exists()
        (after,) = pol.sample(req)
        ref = trainer_logprobs(other, p, after.token_ids)
        assert max(abs(a - b) for a, b in zip(after.logprobs, ref)) < 5e-3
        old = trainer_logprobs(tiny_model(0), p, before.token_ids)
        assert max(abs(a - b) for a, b in zip(before.logprobs, old)) < 5e-3
    finally:
        pol.close()
    assert not pol.server.running  # the last served file stays in a work_dir of the caller's
    assert (tmp_root() / "push" / "weights-1.gguf").is_file()
