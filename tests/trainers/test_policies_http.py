"""OpenAICompletionsPolicy against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import re
import time

import pytest

from agent_envs.rollout import (
    PolicyConfigError,
    PolicyRequestError,
    PolicyServerError,
    SampleRequest,
    SamplingParams,
)
from trainers.policies import OpenAICompletionsPolicy
from trainers.policies.testing import ScriptedCompletionsServer, default_script


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with ScriptedCompletionsServer() as s:
        yield s


def _fast(url: str, **kw) -> OpenAICompletionsPolicy:  # type: ignore[no-untyped-def]
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_backoff_s", 0.05)
    return OpenAICompletionsPolicy(url, "scripted", timeout_s=5, **kw)


def test_sends_token_prompt_and_vllm_fields_and_parses_ids(server) -> None:  # type: ignore[no-untyped-def]
    pol = _fast(server.url)
    req = SampleRequest(prompt=[200006, 1, 2, 3], max_tokens=20,
                        params=SamplingParams(temperature=0.7, top_p=0.9, top_k=40, seed=5))
    [s] = pol.sample([req])
    body = server.bodies[-1]
    assert body["prompt"] == [200006, 1, 2, 3]
    assert body["stop_token_ids"] == [200002, 200012]
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.7, 0.9, 40, 5)
    assert body["logprobs"] == 0 and body["return_tokens_as_token_ids"] is True
    assert body["skip_special_tokens"] is False and body["max_tokens"] == 20
    want = default_script(body)
    assert s.token_ids == want.token_ids and s.logprobs == want.logprobs
    assert s.finish_reason == "stop" and s.token_ids[-1] == 200002


def test_parses_token_id_strings_when_server_lacks_return_token_ids(server) -> None:  # type: ignore[no-untyped-def]
    pol = _fast(server.url, extra_body={"return_token_ids": False})
    [s] = pol.sample([SampleRequest(prompt=[9, 9], max_tokens=3)])
    assert server.bodies[-1]["return_token_ids"] is False
    assert s.token_ids == default_script(server.bodies[-1]).token_ids
    assert len(s.token_ids) <= 3


def test_retries_5xx_with_backoff_then_succeeds(server) -> None:  # type: ignore[no-untyped-def]
    server.flake(3, status=503)
    pol = _fast(server.url, max_retries=4, backoff_s=0.05, max_backoff_s=1.0)
    t0 = time.perf_counter()
    [s] = pol.sample([SampleRequest(prompt=[1], max_tokens=16)])
    took = time.perf_counter() - t0
    assert s.finish_reason == "stop"
    assert len(server.bodies) == 4
    assert took >= 0.05 + 0.1 + 0.2  # exponential back-off: 0.05, 0.1, 0.2 s


def test_gives_up_after_retries_with_clear_error(server) -> None:  # type: ignore[no-untyped-def]
    server.flake(100, status=502)
    pol = _fast(server.url, max_retries=2)
    [s] = pol.sample([SampleRequest(prompt=[1], max_tokens=4)])
    assert s.finish_reason == "error" and len(server.bodies) == 3
    with pytest.raises(PolicyServerError, match=re.escape("failed 3 times; last error: HTTP 502")):
        s.raise_for_error()


def test_4xx_is_not_retried_and_names_status_body_and_fix(server) -> None:  # type: ignore[no-untyped-def]
    server.reject = (400, '{"error": "This model\'s maximum context length is 4096"}')
    pol = _fast(server.url, max_retries=5)
    [s] = pol.sample([SampleRequest(prompt=[1], max_tokens=4)])
    assert len(server.bodies) == 1
    with pytest.raises(PolicyRequestError) as info:
        s.raise_for_error()
    msg = str(info.value)
    assert info.value.status == 400 and "maximum context length is 4096" in info.value.body
    assert "HTTP 400" in msg and "--max-model-len" in msg


def test_wrong_path_gives_404_fix(server) -> None:  # type: ignore[no-untyped-def]
    pol = _fast(server.url + "/api")
    [s] = pol.sample([SampleRequest(prompt=[1], max_tokens=4)])
    assert "HTTP 404" in s.error and "base_url must be the server root" in s.error


def test_dead_server_is_a_connect_error_after_retries() -> None:
    srv = ScriptedCompletionsServer()
    url = srv.url
    srv.kill()
    [s] = _fast(url, max_retries=1).sample([SampleRequest(prompt=[1], max_tokens=4)])
    assert s.finish_reason == "error" and "ConnectError" in s.error


async def test_async_many_requests_one_pool(server) -> None:  # type: ignore[no-untyped-def]
    pol = _fast(server.url, max_concurrency=8)
    reqs = [SampleRequest(prompt=[i, i + 1], max_tokens=32, params=SamplingParams(seed=i))
            for i in range(40)]
    samples = await pol.asample(reqs)
    await pol.aclose()
    assert len(samples) == 40 and all(s.finish_reason == "stop" for s in samples)
    by_prompt = {tuple(b["prompt"]): b for b in server.bodies}
    for r, s in zip(reqs, samples):  # results in request order
        assert s.token_ids == default_script(by_prompt[tuple(r.prompt)]).token_ids


def test_timeout_is_retried_then_reported(server) -> None:  # type: ignore[no-untyped-def]
    server.delay_s = 0.5
    pol = OpenAICompletionsPolicy(server.url, "m", timeout_s=0.1, max_retries=1, backoff_s=0.01)
    [s] = pol.sample([SampleRequest(prompt=[1], max_tokens=4)])
    assert s.finish_reason == "error" and "ReadTimeout" in s.error


def test_bad_config_messages() -> None:
    with pytest.raises(PolicyConfigError, match=re.escape("must start with http:// or https://, got 'localhost:8000'")):
        OpenAICompletionsPolicy("localhost:8000", "m")
    assert OpenAICompletionsPolicy("http://h:1/v1/", "m").url == "http://h:1/v1/completions"
