"""``agent-envs view --serve``: the page over HTTP on loopback (for a remote box through an SSH
tunnel, or a browser that will not open files). It serves the one file it was given, at ``/``
and under its own name, and nothing else."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent_envs.viewer.source import ViewerError

__all__ = ["check_port", "serve_page"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_port(port: object) -> int:
    """``port`` if it is a TCP port (0: any free one).

    Raises:
        ViewerError: it is not an integer from 0 to 65535.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ViewerError(f"--port must be a TCP port from 0 to 65535 (0: any free one), got "
                          f"{port!r}")
    return port


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_page(page: Path, *, host: str = "127.0.0.1", port: int = 0,
               ready: Callable[[str], None] | None = None, block: bool = True
               ) -> ThreadingHTTPServer:
    """Serve ``page`` until interrupted (``block``) or in a daemon thread (``block=False``).

    Args:
        page: The HTML file ``build_viewer`` wrote.
        host: A loopback address; anything else is refused (the page holds whole episodes).
        port: TCP port; 0 picks a free one.
        ready: Called with the page's URL once the socket listens.
        block: Serve in this thread until KeyboardInterrupt; else return the running server.

    Raises:
        ValueError: ``host`` is not a loopback address.
        ViewerError: ``port`` is not a TCP port, or it cannot be listened on (in use).
    """
    check_port(port)
    if host not in LOOPBACK:
        raise ValueError(f"--host {host!r} is not a loopback address; the viewer serves only on "
                         "127.0.0.1 or ::1 (to share a page, publish the HTML file itself)")
    body = page.read_bytes()
    paths = {"/", "/" + page.name, "/index.html"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in paths:
                self.send_error(404, "only the viewer page is served here")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet: the CLI printed the URL
            return

    try:
        server = (_V6Server if ":" in host else ThreadingHTTPServer)((host, port), Handler)
    except OSError as e:
        raise ViewerError(f"cannot serve the viewer on {host}:{port}: {e.strerror or e}; pick "
                          "another --port, or --port 0 for any free one") from e
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_address[1]}/"
    if ready is not None:
        ready(url)
    if not block:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return server
