"""The Policy interface: requests, samples, sync/async twins, lazy imports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from agent_envs.rollout import (
    HARMONY_STOP_TOKEN_IDS,
    FunctionPolicy,
    Policy,
    PolicyConfigError,
    PolicyError,
    Sample,
    SampleRequest,
    SamplingParams,
)


def test_import_is_light() -> None:
    code = (
        "import sys, agent_envs.rollout, trainers, trainers.policies, trainers.episode, "
        "trainers.rollout\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'ray') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_stop_tokens_are_harmony_ones() -> None:
    from agent_envs import harmony

    assert set(HARMONY_STOP_TOKEN_IDS) == {200002, 200012}
    assert set(HARMONY_STOP_TOKEN_IDS) == set(harmony.STOP_TOKEN_IDS)
    assert SampleRequest(prompt=[1], max_tokens=3).stop_token_ids == HARMONY_STOP_TOKEN_IDS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "SamplingParams.temperature must be a finite number > 0, got 0.0"),
        ({"top_p": 1.5}, "SamplingParams.top_p must be in (0, 1], got 1.5"),
        ({"top_k": -3}, "SamplingParams.top_k must be -1, 0 (both disable it) or positive, got -3"),
    ],
)
def test_sampling_params_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(PolicyConfigError, match=re.escape(message)):
        SamplingParams(**kwargs)


def test_request_and_sample_validation() -> None:
    with pytest.raises(PolicyConfigError, match=re.escape("max_tokens must be >= 1, got 0")):
        SampleRequest(prompt=[1, 2], max_tokens=0)
    with pytest.raises(PolicyConfigError, match=re.escape("SampleRequest.prompt is empty")):
        SampleRequest(prompt=[], max_tokens=4)
    with pytest.raises(PolicyConfigError, match=re.escape("2 token ids but 1 log-probs")):
        Sample(token_ids=[1, 2], logprobs=[0.0], finish_reason="stop")


def test_failed_sample_raises_its_error() -> None:
    ok = Sample(token_ids=[5], logprobs=[-0.5], finish_reason="length")
    assert ok.raise_for_error() is ok
    with pytest.raises(PolicyError, match="boom"):
        Sample.failed("boom").raise_for_error()
    with pytest.raises(KeyError):
        Sample.failed(KeyError("x")).raise_for_error()


async def test_sync_and_async_twins_derive_from_each_other() -> None:
    class SyncOnly(Policy):
        def sample(self, requests):  # type: ignore[no-untyped-def]
            return [Sample(token_ids=[len(r.prompt)], logprobs=[-1.0], finish_reason="length")
                    for r in requests]

    class AsyncOnly(Policy):
        async def asample(self, requests):  # type: ignore[no-untyped-def]
            return [Sample(token_ids=[r.prompt[0]], logprobs=[-2.0], finish_reason="length")
                    for r in requests]

    reqs = [SampleRequest(prompt=[7, 8, 9], max_tokens=1), SampleRequest(prompt=[4], max_tokens=1)]
    assert [s.token_ids for s in await SyncOnly().asample(reqs)] == [[3], [1]]
    import asyncio

    got = await asyncio.to_thread(AsyncOnly().sample, reqs)
    assert [s.token_ids for s in got] == [[7], [4]]

    class Neither(Policy):
        pass

    with pytest.raises(NotImplementedError, match="implements neither"):
        await Neither().asample(reqs)


def test_function_policy_marks_stop_length_and_errors() -> None:
    def fn(req: SampleRequest) -> list[int]:
        if req.prompt[0] == 0:
            raise ValueError("bad prompt")
        return [11, 12, 200012]

    pol = FunctionPolicy(fn)
    a, b, c = pol.sample([
        SampleRequest(prompt=[1], max_tokens=8),
        SampleRequest(prompt=[1], max_tokens=2),
        SampleRequest(prompt=[0], max_tokens=8),
    ])
    assert (a.token_ids, a.finish_reason) == ([11, 12, 200012], "stop")
    assert (b.token_ids, b.finish_reason) == ([11, 12], "length")
    assert c.finish_reason == "error" and c.error == "ValueError: bad prompt"


