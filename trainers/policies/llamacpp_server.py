"""``llama-server`` as a child process: its command line, start-up, health check, restart.

:class:`LlamaCppServer` is what :class:`trainers.policies.llamacpp.LlamaCppPolicy` runs
when it owns its server; the server picks its own port (``--port 0``) and the URL is read
from its log.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent_envs.rollout.errors import PolicyConfigError, PolicyServerError

__all__ = ["LlamaCppServer", "LlamaCppServerConfig"]

#: The llama-server processes this interpreter started and has not stopped: stopped at exit,
#: so a caller that never closes its policy (a CLI run, a script) leaves no server behind.
_RUNNING: set[subprocess.Popen[bytes]] = set()
_OWNER_PID = os.getpid()


@atexit.register
def _stop_all() -> None:
    if os.getpid() != _OWNER_PID:  # a forked child exiting must not stop its parent's servers
        return
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.terminate()
    for proc in list(_RUNNING):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    _RUNNING.clear()

_LISTENING = re.compile(r"listening on (http://\S+?)(?:\s|$)")


@dataclass(frozen=True, kw_only=True)
class LlamaCppServerConfig:
    """How to run ``llama-server``.

    Attributes:
        slots: Requests decoded together (``--parallel``).
        ctx_size: Context of one slot in tokens (prompt + completion); the server gets
            ``slots * ctx_size`` (``--ctx-size``).
        threads: CPU threads (``--threads``; None: llama.cpp's choice).
        kv_cache_type: KV cache type for keys and values (``f16`` is llama.cpp's
            default; ``f32`` removes one source of mismatch; ``q8_0`` saves memory).
        flash_attn: ``auto``, ``on`` or ``off`` (``--flash-attn``).
        binary: A ``llama-server`` binary (None: the build script's, then ``PATH``).
        extra_args: More command-line arguments, e.g. ``("--swa-full",)``.
        startup_timeout_s: How long to wait for the server to answer ``/health``.
        host: Interface to listen on (the port is picked by the server).
    """

    slots: int = 4
    ctx_size: int = 8192
    threads: int | None = None
    kv_cache_type: str = "f16"
    flash_attn: str = "auto"
    binary: str | None = None
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 300.0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.slots < 1 or self.ctx_size < 16:
            raise PolicyConfigError(
                f"LlamaCppServerConfig needs slots >= 1 and ctx_size >= 16; got "
                f"slots={self.slots}, ctx_size={self.ctx_size}.")
        if self.threads is not None and self.threads < 1:
            raise PolicyConfigError(f"LlamaCppServerConfig.threads={self.threads} must be >= 1 "
                                    f"or None (llama.cpp's choice).")
        if self.flash_attn not in ("auto", "on", "off"):
            raise PolicyConfigError(f"LlamaCppServerConfig.flash_attn={self.flash_attn!r} must "
                                    f"be 'auto', 'on' or 'off'.")

    def command(self, binary: str, model: Path) -> list[str]:
        """The ``llama-server`` command line for ``model``."""
        cmd = [binary, "--model", str(model), "--host", self.host, "--port", "0",
               "--parallel", str(self.slots), "--ctx-size", str(self.slots * self.ctx_size),
               "--cache-type-k", self.kv_cache_type, "--cache-type-v", self.kv_cache_type,
               "--flash-attn", self.flash_attn, "--no-webui", "--no-warmup"]
        if self.threads is not None:
            cmd += ["--threads", str(self.threads), "--threads-batch", str(self.threads)]
        return cmd + list(self.extra_args)


@dataclass
class LlamaCppServer:
    """A ``llama-server`` process on one GGUF file: started, health-checked, restarted.

    Args:
        model: The GGUF file.
        config: How to run it.
        log_dir: Where the server's log goes (default: a temporary directory).
    """

    model: Path
    config: LlamaCppServerConfig = field(default_factory=LlamaCppServerConfig)
    log_dir: Path | None = None
    url: str | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_log_dir: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.model = Path(self.model).expanduser()
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="llama-server-"))
            self._own_log_dir = True

    @property
    def log_path(self) -> Path:
        """The current server's log file."""
        assert self.log_dir is not None
        return self.log_dir / "llama-server.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def start(self) -> str:
        """Start the server (if not running) and wait until it is healthy; returns its URL.

        Raises:
            LlamaCppNotBuiltError: no binary (the message gives the build command).
            PolicyServerError: the server exited or did not become healthy in time.
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and self.url:
                return self.url
            return self._start_locked()

    def _start_locked(self) -> str:
        from trainers.export.llamacpp_dist import LlamaCppNotBuiltError, find_binary

        if not self.model.is_file():
            raise PolicyConfigError(
                f"llama.cpp model {str(self.model)!r} does not exist; export one with: "
                f"agent-envs export gguf CHECKPOINT {self.model}")
        try:
            binary = self.config.binary or str(find_binary("llama-server"))
        except LlamaCppNotBuiltError as e:  # a setup problem: say how to fix it, no traceback
            raise PolicyConfigError(str(e)) from e
        cmd = self.config.command(binary, self.model)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child holds it
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
            _RUNNING.add(self._proc)
        finally:
            log.close()
        deadline = time.monotonic() + self.config.startup_timeout_s
        url = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PolicyServerError(
                    f"llama-server exited with code {self._proc.returncode} while starting on "
                    f"{self.model}; command: {' '.join(cmd)}\nlast log lines:\n"
                    f"{self.log_tail()}")
            if url is None:
                m = _LISTENING.search(self.log_path.read_text(encoding="utf-8", errors="replace"))
                url = m.group(1).rstrip("/") if m else None
            if url is not None:
                try:
                    if httpx.get(url + "/health", timeout=5.0).status_code == 200:
                        self.url = url
                        return url
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self._stop_locked()
        raise PolicyServerError(
            f"llama-server did not become healthy within {self.config.startup_timeout_s:g} s "
            f"on {self.model}; raise startup_timeout_s for a large model. Last log lines:\n"
            f"{self.log_tail()}")

    def restart(self, model: Path | None = None) -> str:
        """Stop the server and start it again (on ``model`` if given); returns the URL."""
        with self._lock:
            self._stop_locked()
            if model is not None:
                self.model = Path(model)
            return self._start_locked()

    def _stop_locked(self) -> None:
        proc, self._proc, self.url = self._proc, None, None
        if proc is not None:
            _RUNNING.discard(proc)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and remove its temporary log directory. Idempotent."""
        with self._lock:
            self._stop_locked()
        if self._own_log_dir and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self._own_log_dir = False

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None
