"""make_sandbox / available_backends / register_backend."""

from __future__ import annotations

import re

import pytest

from sandboxes import Limits, SandboxUnavailable, UnknownBackend, available_backends, make_sandbox
from sandboxes.local import LocalSandbox
from sandboxes.registry import register_backend


def test_available_backends_lists_every_backend_with_a_reason_or_none():
    got = available_backends()
    assert set(got) >= {"local", "bubblewrap", "docker"}
    assert got["local"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in got.values())


def test_make_sandbox_passes_limits_and_backend_kwargs():
    limits = Limits(timeout_s=3.0, max_output_bytes=100)
    with make_sandbox("local", limits=limits, spares=0) as sb:
        assert isinstance(sb, LocalSandbox) and sb.limits is limits and sb.spares == 0
        with sb.open() as s:
            assert s.run("print('x' * 1000)").truncated


def test_unknown_names_get_a_suggestion_or_the_list():
    with pytest.raises(UnknownBackend, match=re.escape("did you mean 'bubblewrap'?")):
        make_sandbox("bubblewarp")
    with pytest.raises(UnknownBackend, match=re.escape(
            "unknown sandbox backend 'zzz' Known backends: bubblewrap, docker, local (or 'auto')")):
        make_sandbox("zzz")
    with pytest.raises(ValueError):  # UnknownBackend is also a ValueError
        make_sandbox("zzz")


def test_register_backend_by_import_path(monkeypatch):
    import sandboxes.registry as reg

    monkeypatch.setattr(reg, "_BACKENDS", dict(reg._BACKENDS))
    register_backend("mine", "sandboxes.local:LocalSandbox")
    assert available_backends()["mine"] is None
    register_backend("ghost", "no_such_pkg.mod:Thing")
    assert "no_such_pkg.mod" in available_backends()["ghost"]
    with pytest.raises(SandboxUnavailable, match="module 'no_such_pkg.mod' was not found"):
        make_sandbox("ghost")
    with pytest.raises(ValueError, match=re.escape("entry_point must look like")):
        register_backend("bad", "no-colon")
