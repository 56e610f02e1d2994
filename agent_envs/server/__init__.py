"""Serving environments over OpenEnv's WebSocket protocol, and the remote client.

``agent-envs serve ENV`` (:func:`agent_envs.server.app.run_server`) puts a registered env
behind OpenEnv's ``/ws`` protocol (plus ``/health``, ``/metadata``, ``/schema``) with harmony
token-id payloads; ``agent_envs.remote(url, env_id)`` (:mod:`agent_envs.server.client`) is the
gymnasium env on the other side. The server needs the ``[server]`` extra; this package's
``__init__`` imports neither side so ``import agent_envs`` stays light.
"""

from __future__ import annotations

from agent_envs.server.protocol import RemoteEnvError, ServerBusyError, ServerUnavailableError

__all__ = ["RemoteEnvError", "ServerBusyError", "ServerUnavailableError"]
