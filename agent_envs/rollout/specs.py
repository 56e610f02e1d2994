"""``policy_from_spec``: a policy from the string a user types after ``--policy``.

Built in (no torch, no server): ``oracle``, ``oracle-wrong`` and ``py:MODULE:FACTORY``.
Every other scheme is a plugin registered under the ``agent_envs.policies`` entry-point group
(:mod:`agent_envs.plugins`): the trainers package registers ``http``/``https`` (an
OpenAI-compatible completions server), ``hf`` (transformers), ``vllm`` and ``llamacpp``.
"""

from __future__ import annotations

import difflib
import importlib
import re

from agent_envs import plugins
from agent_envs.rollout.errors import PolicyUnavailableError, RolloutConfigError
from agent_envs.rollout.policy import Policy

__all__ = ["policy_from_spec", "spec_scheme"]

_BUILTIN = ("oracle", "oracle-wrong", "py")


def spec_scheme(spec: str) -> str:
    """The scheme of a policy spec: ``http`` for ``http://H:P``, ``hf`` for ``hf:NAME``,
    the whole spec when it has no colon (``oracle``)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if m:
        return m.group(1).lower()
    return spec.partition(":")[0] if ":" in spec else spec


def policy_from_spec(spec: str, *, model: str | None = None) -> Policy:
    """Build a policy from a CLI spec.

    Specs: ``oracle``, ``oracle-wrong``, ``http://HOST:PORT`` or ``https://...`` (an
    OpenAI-compatible completions server; ``model`` names the served model),
    ``hf:NAME_OR_PATH`` (transformers), ``vllm:NAME_OR_PATH``,
    ``llamacpp:GGUF_OR_URL[,key=value...]`` (llama.cpp's server; see
    ``trainers.policies.llamacpp.LlamaCppPolicy.from_spec``), ``py:MODULE:FACTORY`` (your
    own: ``FACTORY()`` or ``FACTORY(model)`` returns a Policy), or any scheme a package
    registers under the ``agent_envs.policies`` entry-point group.

    Raises:
        RolloutConfigError: An unknown spec, or one its factory refuses.
        PolicyUnavailableError: A known scheme whose plugin (or the package it imports) is not
            installed; the message names the extra to install.
    """
    if spec in ("oracle", "oracle-wrong"):
        from agent_envs.rollout.scripted import OraclePolicy

        return OraclePolicy(wrong=spec == "oracle-wrong")
    scheme = spec_scheme(spec)
    if scheme == "py":
        return _py_policy(spec, model)
    ep = plugins.find(plugins.POLICY_GROUP, scheme) if scheme else None
    if ep is None:
        if scheme in plugins.KNOWN[plugins.POLICY_GROUP]:
            raise PolicyUnavailableError(
                plugins.missing_message(plugins.POLICY_GROUP, scheme, f"policy spec {spec!r}"))
        known = sorted(set(_BUILTIN) | set(plugins.names(plugins.POLICY_GROUP))
                       | set(plugins.KNOWN[plugins.POLICY_GROUP]))
        close = difflib.get_close_matches(scheme, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RolloutConfigError(
            f"unknown policy spec {spec!r}{hint}; use 'oracle', 'oracle-wrong', "
            "'http://HOST:PORT' (with a model name), 'hf:NAME_OR_PATH', 'vllm:NAME_OR_PATH', "
            "'llamacpp:GGUF_OR_URL', 'py:MODULE:FACTORY' or a scheme registered under the "
            f"entry-point group {plugins.POLICY_GROUP!r} (registered here: "
            f"{', '.join(plugins.names(plugins.POLICY_GROUP)) or 'none'})."
        )
    try:
        factory = ep.load()
        return factory(spec, model=model)
    except PolicyUnavailableError:
        raise
    except ImportError as e:
        extra = plugins.KNOWN[plugins.POLICY_GROUP].get(scheme)
        fix = f"pip install '{extra}'" if extra else f"install the package behind {ep.value}"
        raise PolicyUnavailableError(
            f"policy spec {spec!r} needs a package that is not installed ({e.name or e}); "
            f"install it with: {fix}") from e


def _py_policy(spec: str, model: str | None) -> Policy:
    module, _, attr = spec[3:].partition(":")
    if not module or not attr:
        raise RolloutConfigError(f"policy spec {spec!r} must be 'py:MODULE:FACTORY', e.g. "
                                 "'py:mypkg.policies:make_policy'.")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise RolloutConfigError(f"policy spec {spec!r}: cannot load {module}:{attr} "
                                 f"({e}); is the module on PYTHONPATH?") from e
    return factory(model) if model else factory()
