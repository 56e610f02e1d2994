"""Episodes and bundles for the viewer's tests, collected through the real envs and collector."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent_envs.eval.bundle import write_bundle
from agent_envs.eval.suites import Manifest, SuiteTask
from agent_envs.rollout import RolloutCollector, RolloutConfig
from agent_envs.rollout.episode import Episode
from agent_envs.rollout.policy import Policy, Sample, SampleRequest


class ScriptedOracle(Policy):
    """The oracle's completions with seeded, varied log-probs (so the heat strip has
    something to show), or a scripted first turn (malformed text, a cut completion) before it.

    Args:
        wrong: The oracle's deliberately wrong answers.
        first_turn: If given, turn 0 of every episode samples these token ids instead.
    """

    wants_context = True
    version = "1"

    def __init__(self, *, wrong: bool = False, first_turn: Callable[[], list[int]] | None = None,
                 finish: str = "stop") -> None:
        from agent_envs.oracle import Oracle

        self._oracle = Oracle(wrong=wrong)
        self._first = first_turn
        self._finish = finish
        self.policy_id = "scripted-wrong" if wrong else "scripted"

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for r in requests:
            rng = random.Random(r.params.seed)
            if self._first is not None and r.context.turn == 0:
                ids, finish = self._first(), self._finish
            else:
                ids, finish = self._oracle.act(list(r.prompt), r.context.task), "stop"
            ids = ids[: r.max_tokens]
            out.append(Sample(token_ids=ids, finish_reason=finish,
                              logprobs=[-round(rng.expovariate(2.0), 4) for _ in ids]))
        return out

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        return self.sample(requests)


def collect(env_id: str, n: int, policy: Policy, *, seed: int = 0,
            env_kwargs: dict[str, Any] | None = None) -> list[Episode]:
    """``n`` episodes of ``env_id`` (the same tasks for the same ``seed`` and ``n``)."""
    cfg = RolloutConfig(env_id=env_id, num_groups=n, concurrency=4, seed=seed, progress=False,
                        env_kwargs=env_kwargs or {})
    return RolloutCollector(policy, cfg).collect()


def write_test_bundle(out: Path, episodes: list[Episode], *, model: str,
                      suite: str = "viewer-test") -> Path:
    """A bundle of ``episodes`` (one trial each) on a suite made of their tasks."""
    tasks = tuple(dict.fromkeys(e.task_id for e in episodes))
    manifest = Manifest(
        name=suite, version=1, env_id=episodes[0].env_id, task_source="procedural",
        env_kwargs={}, trials=1, verifier_version="test",
        tasks=tuple(SuiteTask(id=t, category=t.split("/")[2],
                              hash=hashlib.sha256(t.encode()).hexdigest()) for t in tasks))
    run = {"identity": {"trials": 1, "seed": 0, "suite_status": "unofficial",
                        "policy_id": episodes[0].policy_id, "policy_version": "1",
                        "model": model, "sampling": {"temperature": 1.0},
                        "reasoning_effort": "medium", "max_infra_retries": 0},
           "started_at": time.time(), "ended_at": time.time()}
    out.mkdir(parents=True, exist_ok=True)
    return write_bundle(out, manifest=manifest, run=run, episodes=episodes, excluded=[],
                        infra_retries=0)


def read_page(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A viewer page's metadata and its data blocks, decoded as the page's script does."""
    import base64
    import gzip
    import json
    import re

    text = path.read_text(encoding="utf-8")
    meta = json.loads(re.search(r'<script type="application/json" id="meta">(.*?)</script>',
                                text, re.DOTALL).group(1))
    blobs = {k: json.loads(gzip.decompress(base64.b64decode(v)))
             for k, v in re.findall(r'<script type="application/x-gzip-base64" id="b-(\w+)">'
                                    r"(.*?)</script>", text, re.DOTALL)}
    return meta, blobs


def page_episode(blobs: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Episode ``row`` of a page with its prompt parts put back, as the page's script does."""
    view = blobs[f"c{row['c']}"][row["k"]]
    where = blobs["index"]["parts"]
    segs = []
    for seg in view["segments"]:
        parts = [blobs[f"p{where[n][0]}"][where[n][1]] for n in seg["parts"]]
        prompt = [dict(m, history=True) if i < seg["history"] else dict(m)
                  for i, m in enumerate(m for p in parts for m in p["messages"])]
        segs.append(dict(seg, ids=[t for p in parts for t in p["ids"]] + seg["completion"],
                         messages=prompt + seg["messages"]))
    return dict(view, segments=segs)
