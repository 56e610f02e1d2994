"""The presets keep the single-tool envs' behaviour token for token (issue 19).

``recorded/recorded.json.gz`` was written by ``recorded/episodes.py`` from the code before
python-tool, browser and functions became presets of the composed env. Each episode is
replayed here (sync and async): every observation must equal the recorded one token for
token, and reward, flags and ``info`` (less wall-clock values) must be the same.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from tests.agent_envs.recorded.episodes import DATA, EPISODES, clean_info, make_env

RECORDED = json.loads(gzip.open(DATA, "rt").read())


def _expected(prev: list[int], step: dict) -> list[int]:
    if step["obs"] is not None:
        return step["obs"]
    return prev + step["action"] + step["appended"]


def test_every_scripted_episode_was_recorded():
    assert [(r["setup"], r["seed"]) for r in RECORDED] == [(s, n) for s, n, _ in EPISODES]
    assert sum(len(r["steps"]) for r in RECORDED) > 80


def _replay(rec: dict, use_async: bool) -> None:
    env = make_env(rec["setup"])

    async def run() -> None:
        reset = env.areset if use_async else None
        obs, info = (await reset(seed=rec["seed"])) if reset else env.reset(seed=rec["seed"])
        assert obs.tolist() == rec["obs"]
        assert clean_info(info) == rec["info"]
        prev = rec["obs"]
        for n, step in enumerate(rec["steps"]):
            out = (await env.astep(step["action"])) if use_async else env.step(step["action"])
            obs, reward, term, trunc, info = out
            want = _expected(prev, step)
            assert obs.tolist() == want, (
                f"{rec['setup']} seed {rec['seed']} step {n}: observation differs "
                f"(lengths {len(obs)} vs {len(want)})")
            assert (reward, term, trunc) == (step["reward"], step["terminated"],
                                             step["truncated"])
            assert clean_info(info) == step["info"], f"step {n}: info differs"
            prev = want

    try:
        asyncio.run(run())
    finally:
        env.close()


@pytest.mark.parametrize("rec", RECORDED, ids=lambda r: f"{r['setup']}-s{r['seed']}")
def test_replay_gives_the_recorded_observations(rec):
    _replay(rec, use_async=False)


@pytest.mark.parametrize("rec", RECORDED[::3], ids=lambda r: f"{r['setup']}-s{r['seed']}")
def test_async_replay_gives_the_recorded_observations(rec):
    _replay(rec, use_async=True)
