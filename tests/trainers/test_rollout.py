"""The collector with trainers' policies: an OpenAI-compatible server (scripted, over real
HTTP) that dies mid-run, and the ``http://`` spec trainers registers (``agent_envs.policies``)."""

from __future__ import annotations

import asyncio
import re

import pytest

from agent_envs.rollout import RolloutCollector, RolloutConfig, RolloutConfigError, policy_from_spec
from trainers.policies import OpenAICompletionsPolicy
from trainers.policies.testing import ScriptedCompletionsServer


def _cfg(**kw) -> RolloutConfig:  # type: ignore[no-untyped-def]
    kw.setdefault("env_id", "python-tool")
    kw.setdefault("progress", False)
    return RolloutConfig(**kw)


def test_killing_the_http_server_mid_run_flags_episodes_and_finishes() -> None:
    with ScriptedCompletionsServer() as server:
        pol = OpenAICompletionsPolicy(server.url, "scripted", max_retries=2, backoff_s=0.01,
                                      timeout_s=5)
        cfg = _cfg(num_groups=8, concurrency=4, env_kwargs={"max_turns": 4})

        async def run():  # type: ignore[no-untyped-def]
            task = asyncio.create_task(RolloutCollector(pol, cfg).acollect())
            while server.served < 10:
                await asyncio.sleep(0.005)
            server.kill()
            eps = await task
            await pol.aclose()
            return eps

        eps = asyncio.run(run())
    assert len(eps) == 8
    flagged = [e for e in eps if e.infra]
    assert flagged and all("policy error" in e.infra_error for e in flagged)
    assert any("ConnectError" in e.infra_error or "failed 3 times" in e.infra_error
               for e in flagged)
    served = [e for e in eps if not e.infra]
    # Random tokens are malformed harmony: model errors, observed, never exceptions.
    assert all(t.model_error for e in eps for t in e.turns)
    assert all(e.truncated_reason == "turns" for e in served)




def test_the_http_spec_is_trainers_plugin() -> None:
    policy = policy_from_spec("http://127.0.0.1:9", model="m")
    assert isinstance(policy, OpenAICompletionsPolicy)
    assert policy.url == "http://127.0.0.1:9/v1/completions"
    with pytest.raises(RolloutConfigError, match=re.escape("also pass the served model name")):
        policy_from_spec("http://127.0.0.1:9")
