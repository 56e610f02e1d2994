"""The pydantic models of the token-id protocol (``/schema`` publishes their JSON Schema).

They subclass OpenEnv's ``Action``/``Observation``/``State`` so OpenEnv's server validates
and serializes them, and OpenEnv clients (``GenericEnvClient``) read them as plain dicts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent_envs.harmony import VOCAB_SIZE
from agent_envs.server._openenv import Action, Observation, State

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
    full_task: bool = Field(
        default=False, description="send the full task (answer, solution, evidence) and the "
                                   "verdict's reason: only for a client holding the server's "
                                   "token, and never for a model's harness")


class TokenAction(Action):
    """One model turn: its text (a raw reply), or ``text: null`` and its token ids.

    ``text`` is the one required field, so a harness that wraps a raw reply as the action's
    single required field (verifiers' ``OpenEnvTaskset``) sends ``{"text": reply}``.
    """

    text: str | None = Field(
        description="the completion as text, harmony special tokens written out (e.g. "
                    "'<|channel|>final<|message|>42<|return|>'); the server encodes it. null "
                    "when 'tokens' holds the completion. Any other JSON value (a reply that "
                    "parsed as JSON, like 2) is taken as its JSON text")
    tokens: list[TokenId] | None = Field(
        default=None, description=f"the sampled completion as token ids in [0, {VOCAB_SIZE}), "
                                  "ending in <|call|> 200012 or <|return|> 200002 unless cut "
                                  "by a length limit (with text: null)")

    @model_validator(mode="before")
    @classmethod
    def _text_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "text" not in data:
            raise PydanticCustomError(
                "text_required",
                "a step action needs a 'text' field: the completion as text, or null when "
                "'tokens' holds it; e.g. {{\"text\": \"<|channel|>final<|message|>7<|return|>"
                "\"}} or {{\"text\": null, \"tokens\": [200005, 17196, 200008, 22, 200002]}}")
        return data

    @field_validator("text", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        try:  # a reply that was JSON (2, true, [1]) is the model's text, not a type error
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(value)

    @model_validator(mode="after")
    def _one_of(self) -> TokenAction:
        if (self.tokens is None) == (self.text is None):
            # A PydanticCustomError (not ValueError) keeps the error list JSON-serializable.
            raise PydanticCustomError(
                "tokens_or_text",
                "a step action needs exactly one of 'text' (the completion as text) or "
                "'tokens' (token ids, with text null); e.g. {{\"text\": "
                "\"<|channel|>final<|message|>7<|return|>\"}} or {{\"text\": null, "
                "\"tokens\": [200005, 17196, 200008, 22, 200002]}}")
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
    text: str = Field(
        default="", description="the decoded text of tokens (when sent) or else of appended, "
                                "special tokens written out: what a chat-level harness shows "
                                "its model")
    terminated: bool = Field(default=False, description="the model gave its final answer")
    truncated: bool = Field(default=False, description="a budget ran out or infra failed")
    info: dict[str, Any] = Field(
        default_factory=dict, description="the env's info dict, as JSON; the verdict's reason "
                                          "is withheld unless full_task was granted")
    task_meta: dict[str, Any] | None = Field(
        default=None, description="on reset: the task's public metadata: id, family, "
                                  "difficulty, split")
    task: dict[str, Any] | None = Field(
        default=None, description="on reset, only with full_task (a client holding the "
                                  "server's token): the task's fields, answer included")
    task_class: str | None = Field(default=None, description="with task: 'module:Class' of "
                                                             "the task")
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
