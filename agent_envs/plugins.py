"""Plugins: what packages above ``agent_envs`` add to it, found by name at run time.

``agent_envs`` never imports ``trainers`` (layers point one way: trainers -> agent_envs ->
sandboxes). What the command line and the policy specs need from above is *registered* as
Python entry points, declared in ``pyproject.toml`` by the package that provides it, and
resolved here by name:

- ``agent_envs.commands``: a subcommand of ``agent-envs``; the entry point is a function
  ``register(subparsers)`` that adds its parser (``train`` and ``export`` come from
  ``trainers.plugins``).
- ``agent_envs.policies``: a policy spec scheme (``hf:NAME``, ``vllm:NAME``, ``http://HOST``,
  ``llamacpp:GGUF``); the entry point is a factory ``factory(spec, *, model=None) -> Policy``.

Your own package can register more of either in its ``pyproject.toml``::

    [project.entry-points."agent_envs.policies"]
    mine = "mypkg.policies:from_spec"     # agent-envs rollout ENV --policy mine:ARGS

A name that is known but not registered (the package that provides it is not installed, or an
editable install predates the entry point) is a clear error naming the extra to install.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, distributions

__all__ = ["COMMAND_GROUP", "KNOWN", "POLICY_GROUP", "find", "missing_message", "names"]

COMMAND_GROUP = "agent_envs.commands"
POLICY_GROUP = "agent_envs.policies"

#: What the project itself registers, with the extra a user installs for it (the
#: ``trainers`` package ships in the ``agent-envs`` distribution; the extras bring what
#: the implementation imports). Used for the error when a name is not registered.
KNOWN: dict[str, dict[str, str]] = {
    COMMAND_GROUP: {"train": "agent-envs[train]", "export": "agent-envs[train,llamacpp]"},
    POLICY_GROUP: {"hf": "agent-envs[train]", "vllm": "agent-envs[gpu]",
                   "http": "agent-envs", "https": "agent-envs", "llamacpp": "agent-envs"},
}


def _group(group: str) -> list[EntryPoint]:
    # Every installed distribution's entry points, not just the first copy of each
    # distribution as ``entry_points()`` gives: a stale ``agent_envs.egg-info`` left in a
    # checkout (on ``sys.path`` as the working directory) must not hide the installed ones.
    seen: dict[str, EntryPoint] = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == group:
                seen.setdefault(ep.name, ep)
    return list(seen.values())


def names(group: str) -> list[str]:
    """The names registered in ``group``, sorted."""
    return sorted({ep.name for ep in _group(group)})


def find(group: str, name: str) -> EntryPoint | None:
    """The entry point ``name`` of ``group``, or None when nothing registers it."""
    for ep in _group(group):
        if ep.name == name:
            return ep
    return None


def missing_message(group: str, name: str, what: str) -> str:
    """The error text for a name of ``group`` that is not registered here."""
    extra = KNOWN.get(group, {}).get(name)
    if extra is None:
        return f"{what}: nothing registers {name!r} under the entry-point group {group!r}"
    return (f"{what} needs the {name!r} plugin, which the trainers package registers under the "
            f"entry-point group {group!r}; it is not installed here. Install it with: "
            f"pip install '{extra}' (in a checkout: pip install -e . refreshes the entry points)")
