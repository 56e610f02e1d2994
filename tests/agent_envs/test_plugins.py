"""Plugins: trainers' policy schemes and subcommands reach agent_envs through entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from agent_envs import cli, plugins
from agent_envs.rollout import (
    FunctionPolicy,
    OraclePolicy,
    PolicyUnavailableError,
    RolloutConfigError,
    policy_from_spec,
)

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> dict[str, dict[str, str]]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"]


def test_the_installed_entry_points_are_the_declared_ones():
    declared = _declared()
    assert set(declared) == {plugins.POLICY_GROUP, plugins.COMMAND_GROUP}
    for group, eps in declared.items():
        assert set(eps) == set(plugins.KNOWN[group])  # every known name has its extra
        for name, value in eps.items():
            ep = plugins.find(group, name)
            assert ep is not None, (f"{group}:{name} is declared in pyproject.toml but not "
                                    "installed; refresh the install: pip install -e . --no-deps")
            assert ep.value == value
            assert value.startswith("trainers.plugins:")  # trainers registers itself
            assert callable(ep.load())


def test_builtin_specs_need_no_plugin(monkeypatch):
    monkeypatch.setattr(plugins, "find", lambda group, name: None)  # nothing registered
    assert isinstance(policy_from_spec("oracle"), OraclePolicy)
    assert policy_from_spec("oracle-wrong").policy_id == "oracle-wrong"
    with pytest.raises(RolloutConfigError, match="must be 'py:MODULE:FACTORY'"):
        policy_from_spec("py:nomodule")


def _fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str,
                       modules: dict[str, str]) -> None:
    """A distribution installed on sys.path (dist-info with entry_points.txt) plus modules."""
    dist = tmp_path / "fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in modules:
        sys.modules.pop(name, None)


def test_a_package_registers_its_own_policy_scheme(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, monkeypatch, """\
        [agent_envs.policies]
        echo = fake_echo:make
        """, {"fake_echo": """\
        from agent_envs.rollout import FunctionPolicy

        def make(spec, *, model=None):
            token = int(spec.partition(":")[2])
            return FunctionPolicy(lambda r: [token], policy_id=f"echo-{model}")
        """})
    policy = policy_from_spec("echo:7", model="m")
    assert isinstance(policy, FunctionPolicy) and policy.policy_id == "echo-m"
    assert "echo" in plugins.names(plugins.POLICY_GROUP)
    with pytest.raises(RolloutConfigError, match=r"did you mean 'echo'\?.*registered here: "
                                                  r"echo, hf"):
        policy_from_spec("ecko:7")


def test_a_plugin_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch):
    # Found before the real hf entry point: loading it fails as if torch were not installed.
    _fake_distribution(tmp_path, monkeypatch, """\
        [agent_envs.policies]
        hf = fake_hf:make
        """, {"fake_hf": "import torch_that_is_not_installed\n"})
    with pytest.raises(PolicyUnavailableError, match=r"torch_that_is_not_installed.*"
                                                     r"pip install 'agent-envs\[train\]'"):
        policy_from_spec("hf:gpt2")


def test_nothing_registered_says_which_extra_to_install(monkeypatch, capsys):
    monkeypatch.setattr(plugins, "find", lambda group, name: None)
    with pytest.raises(PolicyUnavailableError, match=r"'vllm' plugin.*agent_envs.policies.*"
                                                     r"pip install 'agent-envs\[gpu\]'"):
        policy_from_spec("vllm:openai/gpt-oss-20b")
    # the subcommands still parse, and say what to install instead of "invalid choice"
    assert cli.main(["train", "configs/tiny-cpu.toml"]) == 2
    assert "pip install 'agent-envs[train]'" in capsys.readouterr().err
    assert cli.main(["export", "gguf", "tiny", "out.gguf"]) == 2
    assert "pip install 'agent-envs[train,llamacpp]'" in capsys.readouterr().err
    # and a policy spec's missing plugin is one line, exit 2
    assert cli.main(["rollout", "toy-digit", "--policy", "hf:gpt2", "--episodes", "1",
                     "--quiet", "--out", "x.jsonl"]) == 2
    assert "pip install 'agent-envs[train]'" in capsys.readouterr().err


def test_the_registered_subcommands_are_trainers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "TOML config" in capsys.readouterr().out
    assert cli.main(["train"]) == 2  # no config: trainers.cli's usage error, not a traceback
    assert "a CONFIG file is required" in capsys.readouterr().err


def test_a_broken_or_clashing_command_plugin_breaks_no_other_command(tmp_path, monkeypatch,
                                                                    capsys):
    # Before: only ImportError was caught (a stale entry point's AttributeError crashed every
    # command with a traceback), and a plugin named like a built-in ('serve') crashed the parser.
    _fake_distribution(tmp_path, monkeypatch, """\
        [agent_envs.commands]
        broken = fake_cmds:missing_attribute
        serve = fake_cmds:register_serve
        """, {"fake_cmds": """\
        def register_serve(sub):
            raise AssertionError("a plugin must not replace the built-in serve")
        """})
    parser = cli.build_parser()
    assert "serve" in parser._subparsers._group_actions[0].choices
    assert cli.main(["broken"]) == 2
    err = capsys.readouterr().err
    assert "agent-envs broken: its plugin 'fake_cmds:missing_attribute' failed to load" in err
    assert "AttributeError" in err
    assert cli.main(["list"]) == 0  # every other command still works
