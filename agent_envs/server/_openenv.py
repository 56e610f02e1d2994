"""OpenEnv's server classes, imported without its optional web UI.

``openenv.core.env_server``'s ``__init__`` imports its gradio web interface when gradio is
installed (it usually is: openenv-core depends on it), which costs seconds of CPU at every
``agent-envs serve`` start. The server never serves that UI, and OpenEnv skips it when gradio
cannot be imported, so gradio is hidden for the duration of this one import (unless the
process imported it already). Nothing else changes: gradio stays importable afterwards.
"""

from __future__ import annotations

import sys


def _import_openenv() -> None:
    if "openenv.core.env_server" in sys.modules or "gradio" in sys.modules:
        return
    sys.modules["gradio"] = None  # type: ignore[assignment] - `import gradio` fails fast
    try:
        import openenv.core.env_server  # noqa: F401
    finally:
        if sys.modules.get("gradio", ...) is None:
            del sys.modules["gradio"]


_import_openenv()

from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import (
    Action,
    ConcurrencyConfig,
    EnvironmentMetadata,
    Observation,
    State,
)

__all__ = ["Action", "ConcurrencyConfig", "Environment", "EnvironmentMetadata", "HTTPEnvServer",
           "Observation", "State"]
