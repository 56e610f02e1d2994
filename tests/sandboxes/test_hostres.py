"""Cgroup delegation for the CPU share: which cpu dir sessions get, and why none when none.

The real hierarchy of this machine (cgroup v1, ``cpu`` at ``/sys/fs/cgroup/cpu``) is used by
``tests/sandboxes/test_cpu_share.py``; the layouts it does not have (controllers mounted
together, no cpu hierarchy, a v2 parent without the cpu controller) are laid out here as
plain directories, which is all ``CgroupDelegation.create`` reads and writes.
"""

from __future__ import annotations

import os

import pytest

from sandboxes.hostres import CgroupDelegation, CpuShare

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroup delegation needs root")


def test_real_v1_hierarchy_delegates_cpu_with_a_parent_weight_per_core():
    if not os.path.isdir("/sys/fs/cgroup/cpu") \
            or os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("not a cgroup v1 host with a cpu hierarchy")
    cg, why = CgroupDelegation.create()
    assert cg is not None, why
    try:
        assert cg.cpu is not None and cg.cpu_reason == ""
        assert cg.cpu.parent in cg.dirs and cg.cpu.knob == "cpu.shares"
        with open(os.path.join(cg.cpu.parent, "cpu.shares")) as f:
            assert int(f.read()) == 1024 * (os.cpu_count() or 1)
    finally:
        cg.remove()
    assert not any(os.path.exists(d) for d in cg.dirs)


def test_controllers_mounted_together_share_one_dir(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "pids").mkdir()
    (tmp_path / "cpu").symlink_to(tmp_path / "memory")  # "cpu,memory" mounted together
    cg, why = CgroupDelegation.create(str(tmp_path))
    assert cg is not None, why
    assert len(cg.dirs) == 2 and cg.cpu is not None
    assert cg.cpu.parent == cg.dirs[0] and cg.dirs[0].startswith(str(tmp_path / "memory"))


def test_no_cpu_hierarchy_keeps_memory_and_pids_and_says_why(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "pids").mkdir()
    cg, why = CgroupDelegation.create(str(tmp_path))
    assert cg is not None, why
    assert cg.cpu is None and len(cg.dirs) == 2
    assert "no cgroup v1 cpu hierarchy at" in cg.cpu_reason


def test_cpu_share_false_delegates_no_cpu(tmp_path):
    for ctrl in ("memory", "pids", "cpu"):
        (tmp_path / ctrl).mkdir()
    cg, _ = CgroupDelegation.create(str(tmp_path), cpu=False)
    assert cg is not None and cg.cpu is None and len(cg.dirs) == 2
    assert "cpu_share=False" in cg.cpu_reason
    assert not os.listdir(tmp_path / "cpu")


def test_v2_parent_without_the_cpu_controller_says_so(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    cg, why = CgroupDelegation.create(str(tmp_path))
    assert cg is not None, why
    assert cg.version == 2 and cg.cpu is None
    assert "cgroup v2 cpu controller is not available" in cg.cpu_reason


def test_cpu_share_paths_only_name_plain_session_dirs(tmp_path):
    share = CpuShare.for_version(1, str(tmp_path))
    assert share.path("abc123") == str(tmp_path / "abc123" / "cpu.shares")
    for bad in ("", "..", "../x", "a/b"):
        assert share.path(bad) is None
    (tmp_path / "abc123").mkdir()
    knob = tmp_path / "abc123" / "cpu.shares"
    for active, value in ((False, "2"), (True, "1024")):
        knob.write_text("")  # the kernel's file takes each write whole; a plain file is reset
        share.set(share.path("abc123"), active=active)
        assert knob.read_text() == value
    share.set(str(tmp_path / "gone" / "cpu.shares"), active=True)  # no error: best effort
    assert CpuShare.for_version(2, "/x").knob == "cpu.weight"
