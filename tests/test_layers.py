"""Layers point one way: trainers -> agent_envs -> sandboxes.

An ast check over every module of the three packages: each import (at the top, inside a
function, under ``TYPE_CHECKING``), each ``importlib.import_module``/``__import__``/
``find_spec`` call with a literal name, and each string that names a module of a higher layer
(``"trainers.policies.hf"`` in a lazy-import table) counts. A lower layer naming a higher one
is a violation; so is an import cycle between modules at import time (module-level imports).
The checker is tested on a planted tree first, so a check that finds nothing means something.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Top layer first: a package may import the ones after it, never the ones before it.
LAYERS = ("trainers", "agent_envs", "sandboxes")
_IMPORT_CALLS = {"import_module", "__import__", "find_spec"}
_MODULE_STRING = re.compile(r"^(" + "|".join(LAYERS) + r")(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?$")


@dataclass(frozen=True)
class Ref:
    """One place where module ``source`` names module ``target``."""

    source: str
    target: str
    path: str
    line: int
    how: str  # "import", "lazy import", "import call", "module string"
    eager: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def refs_of(root: Path, path: Path) -> list[Ref]:
    """Every reference from the module at ``path`` to another module (see the module doc)."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docs = _docstrings(tree)
    rel = str(path.relative_to(root))
    out: list[Ref] = []

    def add(target: str, node: ast.AST, how: str, eager: bool) -> None:
        out.append(Ref(module, target, rel, getattr(node, "lineno", 0), how, eager))

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            eager = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, eager)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, "import" if eager else "lazy import", eager)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            how = "import" if eager else "lazy import"
            for alias in node.names:  # `from pkg import mod` names the module pkg.mod
                add(f"{target}.{alias.name}" if alias.name != "*" else target, node, how, eager)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0] if node.args else None
            if name in _IMPORT_CALLS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node, "import call", False)
                docs.add(id(arg))  # counted once, as the call
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docs and _MODULE_STRING.match(node.value)):
            add(node.value.partition(":")[0], node, "module string", False)
        for child in ast.iter_child_nodes(node):
            visit(child, eager)

    visit(tree, True)
    return out


def scan(root: Path) -> list[Ref]:
    """The references of every module of the layered packages under ``root``."""
    refs: list[Ref] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            refs.extend(refs_of(root, path))
    return refs


def upward(refs: list[Ref]) -> list[str]:
    """References from a lower layer to a higher one, as ``path:line: a -> b (how)``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for r in refs:
        src, dst = r.source.split(".")[0], r.target.split(".")[0]
        if src in rank and dst in rank and rank[dst] < rank[src]:
            bad.append(f"{r.path}:{r.line}: {r.source} -> {r.target} ({r.how})")
    return bad


def cycles(refs: list[Ref]) -> list[list[str]]:
    """Import-time cycles: strongly connected components (of more than one module) of the
    graph of module-level imports between the scanned modules."""
    modules = {r.source for r in refs}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for r in refs:
        if not r.eager:
            continue
        target = r.target
        while target and target not in modules:  # `from pkg.mod import name`: pkg.mod
            target = target.rpartition(".")[0]
        if target and target != r.source:
            graph[r.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


#: Import-time cycles that are known and deliberate, with why. Each must still exist (so the
#: list cannot rot); a new cycle fails the test.
KNOWN_CYCLES = {
    frozenset({"agent_envs.envs.browser.diskbuild", "agent_envs.envs.browser.diskindex"}):
        "diskindex re-exports build_index with an import at its end, after the names "
        "diskbuild imports from it",
}


def test_no_module_names_a_higher_layer():
    refs = scan(ROOT)
    assert len({r.source for r in refs}) > 100  # every module of the three packages was read
    assert upward(refs) == [], "layers point one way: trainers -> agent_envs -> sandboxes"


def test_no_new_import_time_cycle():
    found = {frozenset(c) for c in cycles(scan(ROOT))}
    assert sorted(map(sorted, found - set(KNOWN_CYCLES))) == []
    assert set(KNOWN_CYCLES) <= found, "a known cycle is gone: drop it from KNOWN_CYCLES"


def _plant(root: Path, files: dict[str, str]) -> None:
    for layer in LAYERS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").write_text('"""The top of the layer."""\n')
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def test_the_check_finds_every_kind_of_planted_upward_import_and_a_cycle(tmp_path):
    _plant(tmp_path, {
        "agent_envs/eager.py": "import trainers.rollout\n",
        "agent_envs/lazy.py": """\
            def run():
                from trainers.episode import Episode
                return Episode
            """,
        "agent_envs/typing_only.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from trainers.policies import Policy
            """,
        "agent_envs/by_name.py": """\
            import importlib
            def load():
                return importlib.import_module("trainers.cli"), __import__("trainers")
            """,
        "agent_envs/table.py": '_LAZY = {"Policy": ("trainers.policies.hf", "[train]")}\n',
        "sandboxes/up.py": "from agent_envs import core\n",
        "sandboxes/way_up.py": "def f():\n    import trainers\n",
        "agent_envs/sub/__init__.py": "",
        "agent_envs/sub/rel.py": "from ... import trainers_shim\n",  # not upward: agent_envs
        "agent_envs/a.py": "from agent_envs import b\n",
        "agent_envs/b.py": "import agent_envs.a\n",
    })
    bad = upward(scan(tmp_path))
    assert sorted(line.split(":")[0] for line in bad) == sorted([
        "agent_envs/eager.py", "agent_envs/lazy.py", "agent_envs/typing_only.py",
        "agent_envs/by_name.py", "agent_envs/by_name.py", "agent_envs/table.py",
        "sandboxes/up.py", "sandboxes/way_up.py",
    ]), bad
    hows = {line.split(":")[0]: line.rpartition("(")[2].rstrip(")") for line in bad}
    assert hows["agent_envs/lazy.py"] == "lazy import"
    assert hows["agent_envs/table.py"] == "module string"
    assert "agent_envs.by_name -> trainers.cli (import call)" in "\n".join(bad)
    assert cycles(scan(tmp_path)) == [["agent_envs.a", "agent_envs.b"]]


def test_the_check_passes_a_tree_that_points_down(tmp_path):
    _plant(tmp_path, {
        "trainers/train.py": """\
            import agent_envs.core
            from sandboxes import pool
            _LAZY = {"TransformersPolicy": ("trainers.policies.hf", "[train]")}
            """,
        "agent_envs/core.py": '''\
            """Trainers read ``trainers.episode`` records (a docstring names it)."""
            from sandboxes.pool import Pool
            MESSAGE = "install the trainers (trainers.rollout) with pip"
            def later():
                import agent_envs.core
            ''',
        "sandboxes/pool.py": "import os\n",
    })
    refs = scan(tmp_path)
    assert any(r.target == "trainers.policies.hf" for r in refs)  # strings are read ...
    assert upward(refs) == []  # ... and trainers may name itself and the layers below
    assert cycles(refs) == []  # a lazy self-import is no import-time cycle


def test_agent_envs_runs_rollouts_and_evals_with_trainers_unimportable(tmp_path):
    """The static check's runtime twin: with ``trainers`` blocked, agent_envs still collects
    episodes, saves and loads them, and builds the CLI (train and export say what to install)."""
    import subprocess
    import sys

    code = textwrap.dedent(f"""
        import sys
        sys.modules["trainers"] = None  # any import of trainers raises ImportError
        from agent_envs.rollout import (RolloutCollector, RolloutConfig, load_episodes,
                                        policy_from_spec, save_episodes)
        import agent_envs.eval, agent_envs.viewer.source, agent_envs.cli
        cfg = RolloutConfig(env_id="toy-digit", num_groups=2, group_size=1, progress=False)
        eps = RolloutCollector(policy_from_spec("oracle"), cfg).collect()
        path = save_episodes(eps, {str(tmp_path / "e.jsonl")!r})
        print(sum(e.solved for e in load_episodes(path)), len(eps))
        rc = agent_envs.cli.main(["train", "configs/tiny-cpu.toml"])
        print("train rc", rc)
        assert not [m for m in sys.modules if m.startswith("trainers.")]
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "2 2"
    assert lines[1] == "train rc 2"
    assert "pip install 'agent-envs[train]'" in r.stderr
