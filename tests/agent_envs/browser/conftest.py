"""Browser tests: the reference tool's tiktoken cache is seeded from the harmony vocabulary,
so nothing downloads."""

from __future__ import annotations

import os

import pytest

from tests.agent_envs.browser.reference import seed_tiktoken_cache, vocab_dir


@pytest.fixture(scope="session", autouse=True)
def _tiktoken_cache(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    seed_tiktoken_cache(cache, vocab_dir())
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    yield
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old
