"""Fixtures for the verl adapter tests: the harmony vocabulary, a tiny gpt-oss "checkpoint"
directory verl can load (config + a harmony tokenizer), verl's composed config, and verl's
own ``AgentLoopWorker`` over a fake vLLM server (see ``verl_fakes``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_VOCAB = _ROOT.parent / "shared" / "vocab"
if not os.environ.get("TIKTOKEN_ENCODINGS_BASE") and (_VOCAB / "o200k_base.tiktoken").is_file():
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)

CONFIG_DIR = _ROOT / "configs" / "verl"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory verl's ``HFModelConfig`` loads: a tiny gpt-oss config and a tokenizer.

    No gpt-oss tokenizer can be downloaded here; the tokenizer is our openai-harmony-backed
    ``HarmonyTokenizer``, found by ``AutoTokenizer`` through ``auto_map`` (remote code).
    """
    from trainers.models.gpt_oss import tiny_gpt_oss_config

    d = tmp_path_factory.mktemp("tiny-gpt-oss")
    tiny_gpt_oss_config(architectures=["GptOssForCausalLM"]).save_pretrained(d)
    (d / "harmony_tokenizer.py").write_text(
        "from trainers.adapters.trl import HarmonyTokenizer\n\n__all__ = ['HarmonyTokenizer']\n")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "HarmonyTokenizer",
        "auto_map": {"AutoTokenizer": ["harmony_tokenizer.HarmonyTokenizer", None]},
        "pad_token": "<|endoftext|>", "eos_token": "<|return|>", "bos_token": "<|startoftext|>",
    }))
    return d


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    from trainers.models.gpt_oss import build_tiny_gpt_oss

    return build_tiny_gpt_oss(seed=0)


def compose_config(overrides: list[str]) -> Any:
    """Our example config, composed by hydra over verl's ppo_trainer (as main_ppo does)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="gpt-oss-20b-python-tool", overrides=overrides)


def make_worker_fn(model_dir: Path, sampler: Any, *, prompt_length: int = 1024,
                   response_length: int = 256, loop: dict[str, Any] | None = None,
                   server_cls: Any = None) -> tuple[Any, Any]:
    """verl's ``AgentLoopWorker`` whose ``LLMServerClient`` reaches a fake vLLM server.

    The config is our example config with the tiny model and these lengths; ``loop``
    overrides keys of the agent_envs entry of ``configs/verl/agent_loop.yaml`` (in a copy);
    ``server_cls`` replaces ``FakeVLLMServer``. Returns ``(worker, server)``.
    """
    import yaml
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.workers.rollout.llm_server import LLMServerClient
    from verl_fakes import FakeLoadBalancer, FakeVLLMServer

    loop_yaml = CONFIG_DIR / "agent_loop.yaml"
    if loop:
        entries = yaml.safe_load(loop_yaml.read_text())
        entries[0].update(loop)
        loop_yaml = model_dir / f"agent_loop_{len(list(model_dir.glob('agent_loop_*')))}.yaml"
        loop_yaml.write_text(yaml.safe_dump(entries))
    cfg = compose_config([
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.model.trust_remote_code=true",
        f"data.max_prompt_length={prompt_length}",
        f"data.max_response_length={response_length}",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loop_yaml}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
    ])
    server = (server_cls or FakeVLLMServer)(sampler)
    client = LLMServerClient(cfg, load_balancer_handle=FakeLoadBalancer(server))
    return AgentLoopWorker(cfg, client), server
