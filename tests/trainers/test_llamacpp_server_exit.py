"""The llama-server processes an interpreter started are stopped at its exit, and only its own."""

from __future__ import annotations

import os
import subprocess

from trainers.policies import llamacpp_server


def test_a_forked_child_exiting_does_not_stop_its_parents_servers():
    # Before: _RUNNING was inherited across fork, so a forked worker that exited normally ran
    # the atexit hook and terminated the parent's llama-server.
    proc = subprocess.Popen(["sleep", "60"])
    llamacpp_server._RUNNING.add(proc)
    try:
        pid = os.fork()
        if pid == 0:  # the child runs the exit hook as its interpreter would
            try:
                llamacpp_server._stop_all()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert proc.poll() is None  # still running
        llamacpp_server._stop_all()  # the owner's own exit does stop it
        assert proc.poll() is not None
    finally:
        llamacpp_server._RUNNING.discard(proc)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
