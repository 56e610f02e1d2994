"""The ``agent-envs`` command line.

    agent-envs list                          registered envs and sandbox backends
    agent-envs rollout python-tool           oracle episodes through the real sandbox
    agent-envs rollout agent --tools python,browser   every tool in one episode
    agent-envs rollout ENV --policy SPEC --out episodes.jsonl
    agent-envs train configs/tiny-cpu.toml   GRPO/PPO training
    agent-envs export gguf CKPT OUT.gguf     a gpt-oss checkpoint for llama.cpp
    agent-envs serve python-tool --port 8000 an env behind OpenEnv's WebSocket protocol
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]


@dataclass
class EpisodeSummary:
    """What the CLI reports for one oracle episode."""

    task_id: str
    reward: float
    correct: bool
    turns: int
    tool_calls: int
    seconds: float
    infra_error: str | None = None
    model_errors: list[str] = field(default_factory=list)
    transcript: str = ""


async def _oracle_episode(env_id: str, env_kwargs: dict[str, Any], seed: int, wrong: bool,
                          keep_transcript: bool, color: bool, env_url: str | None = None
                          ) -> EpisodeSummary:
    import agent_envs
    from agent_envs.oracle import Oracle
    from agent_envs.server.protocol import RemoteEnvError, ServerAuthError
    from agent_envs.transcript import format_transcript

    env = (agent_envs.remote(env_url, env_id, full_task=True, **env_kwargs) if env_url
           else agent_envs.make(env_id, **env_kwargs))  # the oracle reads the full task
    oracle = Oracle(wrong=wrong)
    t0 = time.perf_counter()
    try:
        try:
            obs, info = await env.areset(seed=seed)
        except (RemoteEnvError, OSError, TimeoutError) as e:
            if isinstance(e, ServerAuthError):
                raise  # a missing or wrong token, or full_task refused: the user's to fix
            # The server is down, full or failed the reset: an infra error, flagged as the
            # collector (--out) flags it, so both paths exit 1 when every episode has one.
            import traceback

            why = traceback.format_exception_only(type(e), e)[-1].strip()
            return EpisodeSummary(task_id="?", reward=0.0, correct=False, turns=0,
                                  tool_calls=0, seconds=time.perf_counter() - t0,
                                  infra_error=f"env raised {why}")
        reward, done, errors = 0.0, False, []
        while not done:
            obs, reward, terminated, truncated, info = await env.astep(oracle.act(obs, env.task))
            done = terminated or truncated
            if info["model_error"]:
                errors.append(info["model_error"])
        transcript = format_transcript(env.messages, color=color) if keep_transcript else ""
        verdict = info["verdict"] or {}
        return EpisodeSummary(task_id=info["task_id"], reward=reward,
                              correct=bool(verdict.get("correct")), turns=info["turn"],
                              tool_calls=info["tool_calls"], seconds=time.perf_counter() - t0,
                              infra_error=info["infra_error"], model_errors=errors,
                              transcript=transcript)
    finally:
        await env.aclose()


async def _run_oracle(args: argparse.Namespace, env_kwargs: dict[str, Any]
                      ) -> list[EpisodeSummary]:
    from tqdm import tqdm

    sem = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=args.episodes, desc=f"rollout {args.env}", unit="ep", file=sys.stderr,
               disable=args.quiet)

    from agent_envs.core import derive_seed

    async def one(i: int) -> EpisodeSummary:
        async with sem:
            # The collector's seeds (--out, other policies): the same --seed draws the same tasks.
            seed = derive_seed(args.seed, "env", i // args.group_size)
            s = await _oracle_episode(args.env, env_kwargs, seed,
                                      args.policy == "oracle-wrong", i < args.transcripts,
                                      not args.no_color and sys.stdout.isatty(), args.env_url)
        bar.update(1)
        bar.set_postfix(solved=f"{sum(1 for r in results if r and r.correct)}")
        return s

    results: list[EpisodeSummary | None] = [None] * args.episodes

    async def slot(i: int) -> None:
        results[i] = await one(i)

    try:
        await asyncio.gather(*(slot(i) for i in range(args.episodes)))
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _print_summary(args: argparse.Namespace, eps: list[EpisodeSummary], wall: float) -> None:
    n = len(eps)
    for i, e in enumerate(eps[: args.transcripts]):
        print(f"\n=== episode {i} | task {e.task_id} | reward {e.reward:g} ===")
        print(e.transcript)
    solved = sum(e.correct for e in eps)
    infra = sum(e.infra_error is not None for e in eps)
    mean = (lambda xs: sum(xs) / len(xs) if xs else 0.0)
    print("\n=== summary ===")
    print(f"env            {args.env}   policy {args.policy}   split {args.split}"
          f"   difficulty {args.difficulty or 'default'}   sandbox {args.sandbox or 'default'}")
    print(f"episodes       {n}")
    print(f"solved         {solved}/{n} ({100 * solved / max(n, 1):.1f}%)")
    print(f"mean reward    {mean([e.reward for e in eps]):.3f}")
    print(f"mean turns     {mean([e.turns for e in eps]):.2f}")
    print(f"tool calls     {sum(e.tool_calls for e in eps)} "
          f"({mean([e.tool_calls for e in eps]):.2f}/episode)")
    print(f"infra errors   {infra}")
    print(f"model errors   {sum(len(e.model_errors) for e in eps)}")
    print(f"episode time   p50 {sorted(e.seconds for e in eps)[n // 2] * 1000:.1f} ms"
          if n else "episode time   -")
    print(f"wall time      {wall:.2f} s ({n / wall:.1f} episodes/s)")


def _env_args(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON when it parses (numbers, true, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env-arg expects KEY=VALUE, got {item!r}; e.g. --env-arg "
                             "max_turns=8")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _tool_names(env_id: str, value: str) -> list[str]:
    """``--tools python,browser`` as a list of tool names (for the ``agent`` env)."""
    from agent_envs.registry import spec

    if spec(env_id).name != "agent":
        raise ValueError(f"--tools is for the agent env (agent-envs rollout agent --tools "
                         f"python,browser); {env_id} has its tools built in")
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise ValueError(f"--tools {value!r} names no tool; e.g. --tools python,browser")
    return names


def _all_infra(flagged: int, episodes: int, first: str | None) -> int:
    """The rollout exit code: 1 when every episode was flagged as an infra error, else 0."""
    if episodes and flagged == episodes:
        print(f"error: all {episodes} episode(s) were flagged as infra errors, so nothing usable "
              f"was collected (first: {first}); fix the environment (sandbox, --env-url server, "
              f"policy server) and run again", file=sys.stderr)
        return 1
    return 0


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so that it dumps as strict JSON."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def cmd_rollout(args: argparse.Namespace) -> int:
    """Run episodes of ENV with a policy; print transcripts and a summary.

    Exit code (both ways of running, with or without ``--out``): 0 when the run finished and
    at least one episode ran without an infra error (rewards are reported, not judged); 1 when
    every episode was flagged as an infra error; 2 for bad input (nothing ran).
    """
    env_kwargs: dict[str, Any] = {"split": args.split}
    for name in ("difficulty", "sandbox"):
        if getattr(args, name) is not None:
            env_kwargs[name] = getattr(args, name)
    if args.tasks:
        env_kwargs["task_source"] = args.tasks
    if args.tools is not None:
        env_kwargs["tools"] = _tool_names(args.env, args.tools)
    env_kwargs.update(_env_args(args.env_arg))
    if args.episodes % args.group_size:
        raise ValueError(f"--episodes ({args.episodes}) must be a multiple of --group-size "
                         f"({args.group_size}); e.g. --episodes "
                         f"{max(1, args.episodes // args.group_size) * args.group_size}")
    if not (args.env_url or os.environ.get("AGENT_ENVS_ENV_URL")):
        # Make one env now: a bad env argument (a misspelt name, --sandbox bubblewarp, a bad
        # value) is a clear error here, not an infra error in every episode.
        import agent_envs

        agent_envs.make(args.env, **env_kwargs).close()
    t0 = time.perf_counter()
    if args.policy in ("oracle", "oracle-wrong") and not args.out and args.backend == "local":
        eps = asyncio.run(_run_oracle(args, env_kwargs))
        _print_summary(args, eps, time.perf_counter() - t0)
        failed = [e for e in eps if e.infra_error]
        return _all_infra(len(failed), len(eps), failed[0].infra_error if failed else None)
    from agent_envs.rollout import run_rollout_cli

    summary = run_rollout_cli(env_id=args.env, policy_spec=args.policy, episodes=args.episodes,
                              out=args.out, concurrency=args.concurrency,
                              group_size=args.group_size, seed=args.seed, model=args.model,
                              max_tokens=args.max_tokens, temperature=args.temperature,
                              top_p=args.top_p, env_kwargs=env_kwargs, backend=args.backend,
                              progress=not args.quiet, env_url=args.env_url)
    print(json.dumps(_finite(summary), indent=2, default=str, allow_nan=False))
    first = next(iter(summary.get("infra_errors") or {}), None)
    return _all_infra(summary["infra_flagged"], summary["episodes"], first)


EVAL_ACTIONS = ("list", "compare", "board", "rescore", "verify", "export")


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval SUITE`` runs a suite; ``eval list|compare|board|rescore|verify`` work on bundles."""
    from agent_envs import eval as ev

    target, rest = args.target, list(args.rest)
    if target == "list":
        for s in ev.list_suites():
            pinned = ev.official_manifest(s.name)
            state = f"pinned {pinned.hash[:12]}" if pinned else "unpinned (local data)"
            print(f"{s.name:<20} v{s.version}  {s.env_id:<16} trials {s.trials}  {state}  "
                  f"{s.description}")
        return 0
    if target == "verify":
        if len(rest) != 1:
            raise ValueError("usage: agent-envs eval verify BUNDLE_DIR (or BUNDLE_DIR.tar.gz)")
        problems = ev.verify(rest[0])
        for line in problems:
            print(f"FAIL {line}")
        print("OK: hashes, episodes and metrics verify" if not problems
              else f"{len(problems)} problem(s): the bundle does not verify")
        return 1 if problems else 0
    if target == "rescore":
        if len(rest) != 1:
            raise ValueError("usage: agent-envs eval rescore BUNDLE_DIR")
        changed = ev.rescore(rest[0])
        for c in changed:
            print(f"{c['episode']}: {c['old']} -> {c['new']} ({c['reason']})")
        print(f"{len(changed)} verdict(s) changed under today's verifiers")
        return 0
    if target == "compare":
        if len(rest) != 2:
            raise ValueError("usage: agent-envs eval compare BUNDLE_A BUNDLE_B")
        r = ev.compare(rest[0], rest[1])
        print(f"A {r['a']['model']}: accuracy {r['a']['accuracy']:.3f}   "
              f"B {r['b']['model']}: accuracy {r['b']['accuracy']:.3f}")
        print(f"B - A on {r['shared_tasks']} shared tasks: {r['diff']:+.3f} "
              f"(95% CI {r['ci'][0]:+.3f} .. {r['ci'][1]:+.3f})"
              + ("" if r["same_suite"] else "  [different suite hashes]"))
        for t in r["flipped"]["to_correct"]:
            print(f"  wrong -> correct  {t}")
        for t in r["flipped"]["to_wrong"]:
            print(f"  correct -> wrong  {t}")
        return 0
    if target == "board":
        if not rest:
            raise ValueError("usage: agent-envs eval board BUNDLE_DIR... [--html FILE]")
        md, page = ev.board(rest, html_path=args.html)  # rows link to each viewer
        Path(args.html).write_text(page)
        print(md + f"\nHTML: {args.html}")
        return 0
    if target == "export":
        if len(rest) != 1 or args.format is None:
            raise ValueError("usage: agent-envs eval export BUNDLE_DIR --format tau2 [--out FILE]")
        from agent_envs.envs.tau2.export import export_bundle

        s = export_bundle(rest[0], args.out or str(Path(rest[0]) / "tau2_results.json"))
        mean = "-" if s["mean_reward"] is None else f"{s['mean_reward']:.3f}"
        print(f"wrote τ²'s results JSON to {s['out']}: {s['simulations']} simulations of "
              f"{s['tasks']} {s['domain']} tasks, mean reward {mean}")
        return 0
    if rest:
        raise ValueError(f"unexpected arguments after the suite name: {rest}")
    from agent_envs.rollout import policy_from_spec

    policy = policy_from_spec(args.policy, model=args.model)
    cfg = ev.EvalConfig(trials=args.trials, concurrency=args.concurrency, seed=args.seed,
                        max_infra_retries=args.retries, allow_modified=args.allow_modified,
                        reasoning_effort=args.reasoning_effort, temperature=args.temperature,
                        top_p=args.top_p, max_tokens=args.max_tokens, model=args.model,
                        progress=not args.quiet, env_url=args.env_url, limit=args.limit)
    if args.user or args.user_model or args.record_user or args.judge or args.judge_model:
        # suites with a simulated user (tau2-*)
        import dataclasses

        from agent_envs.envs.tau2.cli import eval_env_args

        cfg = dataclasses.replace(cfg, env_args=eval_env_args(args, policy_from_spec))
    out = args.out or str(Path("runs") / "eval" / target / (
        re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model or args.policy) + f"-s{args.seed}"
        + (f"-n{args.limit}" if args.limit else "")))
    bundle = ev.run_eval(target, policy, out, cfg)
    m = json.loads((bundle / "metrics.json").read_text())["overall"]
    acc = m["accuracy"]
    if acc["value"] is None:  # nothing scored: every episode was excluded as infra
        excluded = json.loads((bundle / "metrics.json").read_text()).get("excluded_infra", {})
        print(f"error: no task of {target} was scored: all {excluded.get('count', 0)} "
              f"episode(s) were excluded as infra errors (first: {excluded.get('keys', ['?'])[:1]})"
              f". The bundle is at {bundle}; fix the environment (sandbox, --env-url server) "
              f"and run again.", file=sys.stderr)
        return 1
    print(f"{target}: accuracy {acc['value']:.3f} (95% CI {acc['ci'][0]:.3f} .. "
          f"{acc['ci'][1]:.3f}) over {m['tasks']} tasks, {m['episodes']} episodes")
    print(f"bundle: {bundle}  (and {bundle}.tar.gz); check it with: agent-envs eval verify "
          f"{bundle}")
    return 0


def _register_plugin_commands(sub: Any) -> None:
    """Subcommands other packages register (``agent_envs.commands`` entry points: ``train``
    and ``export`` come from trainers). One that is known but not installed still parses and
    says which extra brings it."""
    from agent_envs import plugins

    group = plugins.COMMAND_GROUP
    for name in [*plugins.KNOWN[group], *(n for n in plugins.names(group)
                                          if n not in plugins.KNOWN[group])]:
        if name in sub.choices:  # a plugin named like a built-in command does not replace it
            continue
        ep = plugins.find(group, name)
        problem = None
        if ep is not None:
            try:
                ep.load()(sub)
                continue
            except ImportError as e:
                problem = (f"agent-envs {name} could not be loaded ({e}); install it with: "
                           f"pip install '{plugins.KNOWN[group].get(name, 'agent-envs')}'")
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break every command
                problem = (f"agent-envs {name}: its plugin {ep.value!r} failed to load "
                           f"({type(e).__name__}: {e}); reinstall the package that provides it")
        message = problem or plugins.missing_message(group, name, f"agent-envs {name}")
        stub = sub.add_parser(name, add_help=False, help=f"(not installed) {message}")
        stub.add_argument("argv", nargs=argparse.REMAINDER)
        stub.set_defaults(func=lambda args, message=message: _not_installed(message))


def _not_installed(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve ENV over OpenEnv's WebSocket protocol until interrupted."""
    try:
        from agent_envs.server.app import ServerSettings, run_server
        from agent_envs.server.protocol import TOKEN_ENV_VAR
    except ModuleNotFoundError as e:
        print(f"error: agent-envs serve needs the [server] extra ({e.name} is missing): "
              "pip install 'agent-envs[server]'", file=sys.stderr)
        return 2
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV_VAR) or None
    settings = ServerSettings(
        env_id=args.env, env_kwargs=_env_args(args.env_arg), max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout or None, step_timeout_s=args.step_timeout or None,
        token=token, workers=args.workers, env_calls=args.env_calls)

    def ready(url: str) -> None:
        auth = "token required" if token else "no token"
        print(f"serving {settings.served_id} on {url} (WebSocket {url}/ws; /health, /metadata, "
              f"/schema); max {settings.max_sessions} sessions, idle timeout "
              f"{settings.idle_timeout_s or 'off'} s, step timeout "
              f"{settings.step_timeout_s or 'off'} s, {auth}", flush=True)

    try:
        run_server(settings, host=args.host, port=args.port, log_level=args.log_level,
                   ready=ready, check_env=not args.no_env_check)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly; no traceback
        pass
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List registered environments and sandbox backends."""
    import agent_envs
    from sandboxes import available_backends

    print("environments:")
    for s in agent_envs.list_envs():
        print(f"  {s.id:<20} gymnasium: {s.gym_id:<32} {s.description}")
    print("sandbox backends:")
    backends = available_backends()
    for name, problem in backends.items():
        print(f"  {name:<12} {'available' if problem is None else 'unavailable: ' + problem}")
    if not args.protections:
        print("(agent-envs list --protections starts each available backend and reports what "
              "it isolates here, as measured)")
        return 0
    import dataclasses

    from sandboxes.registry import protection_report

    for name, problem in backends.items():
        if problem is not None or name == "auto":
            continue
        report = protection_report(name)
        p = report["protections"]
        if p is None:
            print(f"\n{name}: could not start: {report['reason']}")
            continue
        on = [f.name for f in dataclasses.fields(p) if f.name != "notes" and getattr(p, f.name)]
        off = [f.name for f in dataclasses.fields(p) if f.name != "notes"
               and not getattr(p, f.name)]
        print(f"\n{name}: active: {', '.join(on) or '-'}; not active: {', '.join(off) or '-'}")
        for note in p.notes:
            print(f"  - {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="agent-envs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rollout", help="run episodes and print transcripts and a summary")
    r.add_argument("env", help="environment id, e.g. python-tool or python-tool-v0")
    r.add_argument("--policy", default="oracle",
                   help="oracle | oracle-wrong | http://HOST:PORT (with --model) | "
                        "hf:NAME_OR_PATH | vllm:NAME_OR_PATH | llamacpp:GGUF_OR_URL "
                        "(default: oracle)")
    r.add_argument("--model", default=None, help="served model name for an http policy")
    r.add_argument("--max-tokens", type=int, default=4096, help="max new tokens per completion")
    r.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    r.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling top-p")
    r.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="run env workers in this process (local) or as Ray actors (ray)")
    r.add_argument("--episodes", type=int, default=16, help="number of episodes (default 16)")
    r.add_argument("--concurrency", type=int, default=8, help="episodes in flight (default 8)")
    r.add_argument("--group-size", type=int, default=1, help="episodes per task (GRPO groups)")
    r.add_argument("--seed", type=int, default=0, help="base seed; episode i uses seed+i")
    r.add_argument("--split", choices=("train", "test"), default="train")
    r.add_argument("--difficulty", type=int, default=None,
                   help="procedural difficulty 1..5 (default: the env's)")
    r.add_argument("--tasks", default=None,
                   help="task source, e.g. procedural | jsonl:PATH | gsm8k[:split] | "
                        "math[:split] (python-tool); the env's own specs elsewhere")
    r.add_argument("--sandbox", default=None,
                   help="sandbox backend for python-tool (default: the env's)")
    r.add_argument("--tools", default=None, metavar="TOOL,...",
                   help="the agent env's tools: python, browser, functions, comma-separated "
                        "(default: python,browser)")
    r.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other env argument (repeatable; VALUE is JSON when it parses)")
    r.add_argument("--env-url", default=None, metavar="URL[,URL...]",
                   help="run the envs on an `agent-envs serve` server at URL "
                        "(http://HOST:PORT) instead of in this process; several servers: "
                        "URLs separated by commas (each session goes to the least-loaded)")
    r.add_argument("--transcripts", type=int, default=2, help="transcripts to print (default 2)")
    r.add_argument("--out", default=None, help="write episodes to FILE (.jsonl or .parquet)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--no-color", action="store_true", help="plain transcripts")
    r.set_defaults(func=cmd_rollout)

    e = sub.add_parser(
        "eval", help="run a policy on a versioned suite; or list|compare|board|rescore|verify",
        description="agent-envs eval SUITE --policy SPEC [options]  runs (or resumes) a suite "
                    "into a result bundle; agent-envs eval list | compare A B | board DIR... "
                    "[--html F] | rescore DIR | verify DIR work on suites and bundles.")
    e.add_argument("target", help="a suite name (see 'eval list') or one of " +
                   ", ".join(EVAL_ACTIONS))
    e.add_argument("rest", nargs="*", help="bundle directories for compare/board/rescore/verify")
    e.add_argument("--policy", default="oracle",
                   help="oracle | oracle-wrong | http://HOST:PORT (with --model) | hf:NAME | "
                        "vllm:NAME | llamacpp:GGUF_OR_URL | py:MODULE:FACTORY")
    e.add_argument("--model", default=None, help="served model name (recorded in the bundle)")
    e.add_argument("--trials", type=int, default=None, help="trials per task (default: suite's)")
    e.add_argument("--concurrency", type=int, default=16, help="episodes in flight")
    e.add_argument("--seed", type=int, default=0, help="base seed of env and sampling seeds")
    e.add_argument("--retries", type=int, default=2, help="retries of an infra-flagged episode")
    e.add_argument("--limit", type=int, default=None, metavar="N",
                   help="run a seeded sample of N tasks, stratified by category (recorded in "
                        "the bundle; default: every task)")
    e.add_argument("--allow-modified", action="store_true",
                   help="run a suite that differs from its pinned manifest (unofficial)")
    e.add_argument("--reasoning-effort", choices=("low", "medium", "high"), default=None)
    e.add_argument("--max-tokens", type=int, default=4096, help="max new tokens per completion")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--top-p", type=float, default=1.0)
    e.add_argument("--out", default=None,
                   help="bundle directory (default runs/eval/SUITE/MODEL-sSEED); rerunning "
                        "into it resumes")
    e.add_argument("--env-url", default=None, metavar="URL[,URL...]",
                   help="run the suite's envs on an `agent-envs serve` server at URL (it must "
                        "serve the suite's env at this version); several servers: URLs "
                        "separated by commas")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--html", default="board.html", help="board: where to write the HTML page")
    e.add_argument("--format", choices=("tau2",), default=None,
                   help="export: tau2 writes τ²-bench's results JSON (to --out, default "
                        "BUNDLE/tau2_results.json)")
    e.add_argument("--user", default=None, metavar="SPEC",
                   help="tau2 suites: who plays the user: scripted (default) | cassette:PATH | "
                        "a policy spec (http://HOST:PORT with --user-model, hf:NAME, ...)")
    e.add_argument("--user-model", default=None, help="served model name of an http --user")
    e.add_argument("--record-user", default=None, metavar="PATH",
                   help="tau2 suites: append each episode's user side to this JSONL cassette")
    e.add_argument("--judge", default=None, metavar="SPEC",
                   help="tau2 suites: a policy spec that grades τ²'s NL assertions (default: "
                        "off, as in τ²)")
    e.add_argument("--judge-model", default=None, help="served model name of an http --judge")
    e.set_defaults(func=cmd_eval)

    sv = sub.add_parser(
        "serve", help="serve an env over OpenEnv's WebSocket protocol (token ids)",
        description="Serve ENV over OpenEnv's protocol: a WebSocket session per client at /ws "
                    "(reset/step/state/close with harmony token ids), plus /health, /metadata "
                    "and /schema. Clients: agent_envs.remote(URL, ENV), --env-url URL on "
                    "rollout/eval, env.url in a train config, OpenEnv's GenericEnvClient or "
                    "verifiers' OpenEnvTaskset. Observations never carry a task's answer, "
                    "solution or evidence. Before listening, one env is made, reset and closed "
                    "with the --env-arg values, so a bad one fails here.")
    sv.add_argument("env", help="environment id, e.g. python-tool or toy-digit")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    sv.add_argument("--port", type=int, default=8000,
                    help="TCP port, 0 to 65535 (default 8000; 0: any free port)")
    sv.add_argument("--token", default=None,
                    help="clients must present this token (Authorization: Bearer TOKEN; "
                         "agent_envs.remote(..., token=...) or AGENT_ENVS_SERVER_TOKEN) for "
                         "anything but /health; default: $AGENT_ENVS_SERVER_TOKEN, else none "
                         "(a warning when --host is not a loopback address)")
    sv.add_argument("--max-sessions", type=int, default=64,
                    help="most concurrent sessions (one env each); one more is refused "
                         "in-band and agent_envs.remote waits and retries (default 64)")
    sv.add_argument("--idle-timeout", type=float, default=600.0,
                    help="close sessions idle this many seconds, env included (0: never; "
                         "default 600)")
    sv.add_argument("--step-timeout", type=float, default=600.0,
                    help="a reset/step running longer ends its episode with an in-band "
                         "infra error and a fresh env (0: no limit; default 600)")
    sv.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="env argument pinned for every session (repeatable; VALUE is JSON "
                         "when it parses), e.g. --env-arg sandbox=bubblewrap")
    sv.add_argument("--workers", type=int, default=32,
                    help="threads shared by all sessions for making envs and for envs that "
                         "run synchronously (default 32; async envs such as python-tool run "
                         "on the event loop, with no thread per session)")
    sv.add_argument("--env-calls", choices=("auto", "threads"), default="auto",
                    help="auto: envs with native async twins run on the event loop, others "
                         "on the worker threads; threads: every env call on the workers")
    sv.add_argument("--no-env-check", action="store_true",
                    help="skip making, resetting and closing one env before listening")
    sv.add_argument("--log-level", default="warning",
                    choices=("critical", "error", "warning", "info", "debug"))
    sv.set_defaults(func=cmd_serve)

    ls = sub.add_parser("list", help="list environments and sandbox backends")
    ls.add_argument("--protections", action="store_true",
                    help="start each available sandbox backend and print what it isolates")
    ls.set_defaults(func=cmd_list)
    from agent_envs.viewer.cli import register as register_view

    register_view(sub)
    from agent_envs.envs.browser.corpus_cli import register as register_corpus

    register_corpus(sub)

    _register_plugin_commands(sub)  # after the built-ins: a plugin cannot take their names
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agent-envs`` console script."""
    from agent_envs.harmony.vocab import use_default_vocab

    use_default_vocab()  # ../shared/vocab beside a checkout; child processes inherit it
    args = build_parser().parse_args(argv)
    for name in ("episodes", "concurrency", "group_size", "trials"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    from agent_envs.errors import AgentEnvsError
    from sandboxes.errors import SandboxError

    # A user's mistakes (arguments, config, env arguments, a policy spec, a missing optional
    # package) are one line and exit code 2, never a traceback.
    user_errors: tuple[type[BaseException], ...] = (
        AgentEnvsError, SandboxError, ValueError, TypeError, ImportError)
    try:
        return int(args.func(args))
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
