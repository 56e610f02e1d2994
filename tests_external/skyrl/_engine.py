"""A deterministic python-tool agent, and a loopback server that serves it over vLLM's HTTP API.

SkyRL's inference engine client (``RemoteInferenceClient``) talks HTTP to vLLM servers:
``POST /inference/v1/generate`` with prompt token ids and vLLM sampling parameters, and
``POST /detokenize``. vLLM cannot run here (no GPU), so :class:`VLLMGenerateServer`
answers those two endpoints in vLLM's wire format from a :class:`ScriptedAgent`, and the
tests drive SkyRL's real client against it over real HTTP on 127.0.0.1.

The agent works from the prompt tokens alone (as a model does), plus a table from task
text to task that the test builds (it stands in for the model's knowledge): it makes
``warmups`` python calls, then one with the task's reference code, then answers from the
tool's output. Its log-probs are a pure function of (seed, prompt length, position), so an
in-process run of the same agent (``as_policy``) must give the same floats.
``policy_engine`` serves one of our policies instead (the tiny random gpt-oss sampler).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai_harmony as oh

from agent_envs.harmony import get_codec, message_text
from agent_envs.oracle import Oracle
from agent_envs.rollout import FunctionPolicy
from agent_envs.rollout.policy import Policy, Sample, SampleRequest, SamplingParams
from agent_envs.tasks.base import Task


class ScriptedAgent:
    """Token-in/token-out python-tool agent (see the module docstring).

    Args:
        tasks: The tasks it may meet.
        warmups: Python calls before the one that solves the task.
        hedge: Give a first final answer with no extractable answer (an env with
            ``answer_retries > 0`` then asks again in a new segment).
        fail_tasks: Task ids whose requests the server answers with HTTP ``fail_status``.
        fail_status: The HTTP status of those answers (500: vLLM's failed request).
        wrong_when: ``wrong_when(seed)`` True makes the retried answer (after a hedge) wrong.
    """

    def __init__(self, tasks: Sequence[Task], *, warmups: int = 2, hedge: bool = False,
                 fail_tasks: Sequence[str] = (), fail_status: int = 500,
                 wrong_when: Callable[[int | None], bool] | None = None) -> None:
        self.codec = get_codec()
        self.by_prompt = {t.prompt: t for t in tasks}
        self.warmups = warmups
        self.hedge = hedge
        self.fail_tasks = set(fail_tasks)
        self.fail_status = fail_status
        self.wrong_when = wrong_when
        self.oracle = Oracle(self.codec)

    def task_of(self, prompt: Sequence[int]) -> Task:
        users = [m for m in self.codec.parse_conversation(list(prompt))
                 if m.author.role == oh.Role.USER]
        return self.by_prompt[message_text(users[0])]

    def text(self, prompt: Sequence[int], seed: int | None = None) -> str:
        """The completion text for ``prompt`` (``seed``: the request's sampling seed)."""
        msgs = self.codec.parse_conversation(list(prompt))
        users = [m for m in msgs if m.author.role == oh.Role.USER]
        tools = [m for m in msgs if m.author.role == oh.Role.TOOL]
        task = self.by_prompt[message_text(users[0])]
        if len(users) > 1:
            answer = task.answer
            if self.wrong_when is not None and self.wrong_when(seed):
                answer = f"{answer}1"  # exact-match answers: never right
            return f"<|channel|>final<|message|>Again: \\boxed{{{answer}}}.<|return|>"
        if len(tools) < self.warmups:
            return ("<|channel|>analysis<|message|>Let me warm up the interpreter.<|end|>"
                    "<|start|>assistant<|channel|>analysis to=python code<|message|>"
                    f"print({len(tools) + 1} * 7)<|call|>")
        if len(tools) == self.warmups:
            assert task.solution_code is not None
            return ("<|channel|>analysis to=python code<|message|>"
                    f"{task.solution_code.rstrip()}<|call|>")
        if self.hedge:
            return "<|channel|>final<|message|>I computed it above.<|return|>"
        return self.oracle.act_text(list(prompt), task)

    def complete(self, prompt: Sequence[int], seed: int | None, max_tokens: int
                 ) -> tuple[list[int], list[float], str]:
        """(token ids, log-probs, vLLM finish reason) for one request."""
        ids = self.codec.encode(self.text(prompt, seed))
        rng = random.Random(f"{seed}/{len(prompt)}")
        lps = [-round(rng.uniform(0.001, 2.0), 6) for _ in ids]
        if len(ids) > max_tokens:
            return ids[:max_tokens], lps[:max_tokens], "length"
        return ids, lps, "stop"

    def engine(self, prompt: list[int], params: dict[str, Any]
               ) -> tuple[list[int], list[float], str]:
        """What the server answers; an injected failure raises ``EngineFailure``."""
        if self.task_of(prompt).id in self.fail_tasks:
            raise EngineFailure("engine worker died (injected)", self.fail_status)
        return self.complete(prompt, params.get("seed"), params["max_tokens"])

    def as_policy(self) -> FunctionPolicy:
        """The same agent as an in-process ``Policy`` (the reference the adapter must match)."""

        def fn(r: SampleRequest) -> Sample:
            ids, lps, reason = self.complete(r.prompt, r.params.seed, r.max_tokens)
            return Sample(token_ids=ids, logprobs=lps,
                          finish_reason="stop" if reason == "stop" else "length")

        return FunctionPolicy(fn, policy_id="scripted-agent")


class EngineFailure(RuntimeError):
    """Answered as HTTP ``status`` (default 500, the way vLLM reports a failed request)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


Engine = Callable[[list[int], dict[str, Any]], tuple[list[int], list[float], str]]


def policy_engine(policy: Policy) -> Engine:
    """Serve one of our policies: vLLM's sampling params -> a ``SampleRequest``."""

    def engine(prompt: list[int], p: dict[str, Any]) -> tuple[list[int], list[float], str]:
        params = SamplingParams(temperature=p["temperature"], top_p=p.get("top_p", 1.0),
                                top_k=p.get("top_k", -1), seed=p.get("seed"))
        [s] = policy.sample([SampleRequest(prompt=prompt, max_tokens=p["max_tokens"],
                                           params=params,
                                           stop_token_ids=tuple(p["stop_token_ids"]))])
        if s.finish_reason == "error":
            raise EngineFailure(s.error or "sampling failed")
        return s.token_ids, s.logprobs, s.finish_reason

    return engine


class VLLMGenerateServer:
    """vLLM's ``/inference/v1/generate`` and ``/detokenize`` on 127.0.0.1.

    Args:
        engine: ``engine(prompt ids, vLLM sampling params) -> (ids, log-probs, finish
            reason)``: a ``ScriptedAgent``'s ``engine`` or ``policy_engine(policy)``.
        logprobs: Put the log-probs in each choice; False answers ``"logprobs": null``,
            as a vLLM server that does not return log-probs does.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        requests: ``(X-Session-ID, body, response choice)`` of every generate call.
    """

    def __init__(self, engine: Engine | ScriptedAgent, *, logprobs: bool = True) -> None:
        self.engine = engine.engine if isinstance(engine, ScriptedAgent) else engine
        self.logprobs = logprobs
        self.codec = get_codec()
        self.requests: list[tuple[str | None, dict[str, Any], dict[str, Any]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = server.answer(self.path, body, self.headers.get("X-Session-ID"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def answer(self, path: str, body: dict[str, Any], session: str | None
               ) -> tuple[int, dict[str, Any]]:
        if path == "/detokenize":
            return 200, {"prompt": self.codec.decode(body["tokens"])}
        if path != "/inference/v1/generate":
            return 404, {"error": f"no route {path}"}
        try:
            ids, lps, reason = self.engine(body["token_ids"], body["sampling_params"])
        except EngineFailure as e:
            return e.status, {"error": {"message": str(e), "code": e.status}}
        content = [{"token": f"token_id:{t}", "logprob": lp} for t, lp in zip(ids, lps)]
        choice = {"index": 0, "token_ids": ids, "finish_reason": reason,
                  "logprobs": {"content": content} if self.logprobs else None}
        with self._lock:
            self.requests.append((session, body, choice))
        return 200, {"id": "gen", "choices": [choice]}

    def __enter__(self) -> VLLMGenerateServer:  # noqa: PYI034 - py3.10 has no typing.Self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def dataset_rows(tasks: Sequence[Task], env_class: str | None = "python-tool"
                 ) -> list[dict[str, Any]]:
    """Rows as SkyRL's ``PromptDataset.collate_fn`` hands them to the trainer."""
    return [{"prompt": [{"role": "user", "content": t.prompt}], "env_class": env_class,
             "env_extras": {"task_id": t.id}, "uid": f"uid-{t.id}"} for t in tasks]
