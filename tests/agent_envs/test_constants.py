"""Harmony token ids are defined once, in agent_envs.harmony, and are what the encoding says;
every package has one error base class (issue 19)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import agent_envs
import sandboxes
import trainers
from agent_envs import harmony
from agent_envs.errors import AgentEnvsError
from sandboxes.errors import SandboxError
from trainers.errors import TrainersError

ROOT = Path(__file__).resolve().parents[2]
IDS = {harmony.RETURN, harmony.CALL, harmony.END, harmony.START, harmony.ENDOFTEXT,
       harmony.FIRST_SPECIAL_ID, harmony.VOCAB_SIZE, 200005, 200008}  # + channel, message


def test_the_constants_are_the_encodings_tokens():
    enc = harmony.get_codec().encoding
    named = {harmony.RETURN: "<|return|>", harmony.CALL: "<|call|>", harmony.END: "<|end|>",
             harmony.START: "<|start|>", harmony.ENDOFTEXT: "<|endoftext|>",
             harmony.FIRST_SPECIAL_ID: "<|startoftext|>"}
    assert {i: enc.decode([i]) for i in named} == named
    assert enc.decode([harmony.FIRST_SPECIAL_ID - 1]) and not enc.is_special_token(
        harmony.FIRST_SPECIAL_ID - 1)
    assert enc.decode([harmony.VOCAB_SIZE - 1]).startswith("<|reserved_")
    assert harmony.STOP_TOKEN_IDS == (harmony.RETURN, harmony.CALL)


def _int_literals(path: Path) -> list[tuple[int, int]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in IDS]


@pytest.mark.parametrize("package", ["agent_envs", "trainers", "sandboxes"])
def test_no_module_outside_agent_envs_harmony_writes_a_harmony_token_id(package):
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.is_relative_to(ROOT / "agent_envs" / "harmony"):
            continue
        found += [f"{path.relative_to(ROOT)}:{line}: {value}"
                  for line, value in _int_literals(path)]
    assert not found, ("import the constant from agent_envs.harmony instead of writing the "
                       "id: " + "; ".join(found))


def _exceptions(package) -> list[type]:
    out = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.split(".")[-1] == "__main__" or "_zygote" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except (ImportError, RuntimeError):  # an optional extra (skyrl, vllm) is missing
            continue
        out += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                if issubclass(obj, Exception) and not issubclass(obj, Warning)
                and obj.__module__ == info.name and not obj.__name__.startswith("_")]
    return out


#: Not errors of the package: what a simulated service raises inside a tool the model calls
#: (the model reads it in the tool's traceback, whose frames show that module's line numbers).
WORLD_ERRORS = {"agent_envs.envs.functions.toolsets.TransientError"}


@pytest.mark.parametrize(("package", "base"), [(agent_envs, AgentEnvsError),
                                               (sandboxes, SandboxError),
                                               (trainers, TrainersError)])
def test_every_public_error_derives_from_the_package_base(package, base):
    strays = [f"{e.__module__}.{e.__name__}" for e in _exceptions(package)
              if not issubclass(e, base) and f"{e.__module__}.{e.__name__}" not in WORLD_ERRORS]
    assert not strays, f"derive these from {base.__name__}: {strays}"
