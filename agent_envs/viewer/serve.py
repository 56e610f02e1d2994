"""``agent-envs view --serve``: the page over HTTP on loopback (for a remote box through an SSH
tunnel, or a browser that will not open files). It serves the one file it was given, at ``/``
and under its own name, and nothing else."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["serve_page"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


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
    """
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

    server = (_V6Server if ":" in host else ThreadingHTTPServer)((host, port), Handler)
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
