"""The pydantic models of the token-id protocol (``/schema`` publishes their JSON Schema).

They subclass OpenEnv's ``Action``/``Observation``/``State`` so OpenEnv's server validates
and serializes them, and OpenEnv clients (``GenericEnvClient``) read them as plain dicts.
"""

from __future__ import annotations

from typing import Annotated, Any

from openenv.core.env_server.types import Action, Observation, State
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from agent_envs.harmony import VOCAB_SIZE

__all__ = ["EnvSessionState", "ResetData", "TokenAction", "TokenObservation"]

TokenId = Annotated[int, Field(ge=0, lt=VOCAB_SIZE)]


class ResetData(BaseModel):
    """The ``data`` of a ``reset`` message (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(default=None, description="the env seed (task and tool behaviour)")
    options: dict[str, Any] | None = Field(
        default=None, description="the env's reset options: task_id (a specific task), split")
    env_kwargs: dict[str, Any] | None = Field(
        default=None, description="env arguments added to the server's pinned --env-arg ones "
                                  "(the session's env is rebuilt when they change)")
    env_id: str | None = Field(default=None, description="the env the client expects; a "
                                                         "mismatch is refused")
    episode_id: str | None = Field(default=None, description="a label echoed in state")


class TokenAction(Action):
    """One model turn: the sampled completion's token ids (or its text)."""

    tokens: list[TokenId] | None = Field(
        default=None, description=f"the sampled completion as token ids in [0, {VOCAB_SIZE}), "
                                  "ending in <|call|> 200012 or <|return|> 200002 unless cut "
                                  "by a length limit")
    text: str | None = Field(
        default=None, description="the completion as text (harmony special tokens written "
                                  "out); the server encodes it. Give tokens or text, not both")

    @model_validator(mode="after")
    def _one_of(self) -> TokenAction:
        if (self.tokens is None) == (self.text is None):
            # A PydanticCustomError (not ValueError) keeps the error list JSON-serializable.
            raise PydanticCustomError(
                "tokens_or_text",
                "a step action needs exactly one of 'tokens' (token ids) or 'text'; "
                "e.g. {{\"tokens\": [200005, 17196, 200008, 22, 200002]}}")
        return self


class TokenObservation(Observation):
    """The env's answer to reset/step, with the observation as a delta where possible."""

    tokens: list[int] | None = Field(
        default=None, description="the whole observation (reset, segment break, text action); "
                                  "None when the client rebuilds it from the delta")
    appended: list[int] = Field(
        default_factory=list, description="tokens the env appended after previous "
                                          "observation + action (when tokens is None)")
    prefix_len: int = Field(default=0, ge=0, description="length of previous observation + "
                                                         "action, which appended follows")
    prefix_hash: str | None = Field(
        default=None, description="BLAKE2b-128 hex of that prefix (int32 little-endian); the "
                                  "client checks it against what it holds")
    terminated: bool = Field(default=False, description="the model gave its final answer")
    truncated: bool = Field(default=False, description="a budget ran out or infra failed")
    info: dict[str, Any] = Field(default_factory=dict,
                                 description="the env's info dict, as JSON")
    task: dict[str, Any] | None = Field(
        default=None, description="on reset: the task's fields (for scripted oracles; a model "
                                  "never needs them)")
    task_class: str | None = Field(default=None,
                                   description="on reset: 'module:Class' of the task")
    allowed_token_ids: list[int] | None = Field(
        default=None, description="on reset, for envs that restrict their tokens (toy-digit): "
                                  "the tokens a policy needs (trainers may restrict sampling)")
    error: dict[str, Any] | None = Field(
        default=None, description="None, or {code, type, message}: bad_request (the caller's "
                                  "mistake), infra, step_timeout or session_closed")


class EnvSessionState(State):
    """What a ``state`` message returns about the session's env."""

    env_id: str = Field(description="the served env's versioned id")
    env_kwargs: dict[str, Any] = Field(default_factory=dict,
                                       description="the kwargs the session's env was made with")
    task_id: str | None = Field(default=None, description="the current episode's task id")
    active: bool = Field(default=False, description="an episode is in progress")
    obs_len: int = Field(default=0, description="length of the last observation sent")
    obs_hash: str | None = Field(default=None, description="prefix_hash of that observation")
