"""The server token (issue 18): requests without it are refused before any session or env is
made; clients present it as an argument, from ``AGENT_ENVS_SERVER_TOKEN``, as a Bearer
header or as the URL's Basic credentials; a server reachable beyond loopback without a
token warns."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import agent_envs
from agent_envs.envs.toy import ToyDigitEnv
from agent_envs.server.app import ServerSettings
from agent_envs.server.auth import is_loopback
from agent_envs.server.protocol import TOKEN_ENV_VAR, ServerAuthError
from tests.agent_envs.server.conftest import AUTH, TOKEN

MADE: list[dict[str, Any]] = []


def counting_toy(**kwargs: Any) -> ToyDigitEnv:
    MADE.append(kwargs)
    return ToyDigitEnv(**kwargs)


def _ws(url: str, headers: dict[str, str] | None = None) -> Any:
    return connect(url.replace("http://", "ws://") + "/ws", open_timeout=10,
                   additional_headers=headers or {})


def _basic(user: str, password: str) -> dict[str, str]:
    cred = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {cred}"}


def test_a_missing_or_wrong_token_is_refused_before_any_env_is_made(serve) -> None:
    server = serve("toy-digit", env_factory=counting_toy)
    MADE.clear()
    for headers in (None, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN},
                    _basic("agent-envs", "nope"), {"Authorization": "Basic !!!"}):
        with pytest.raises(InvalidStatus) as e, _ws(server.url, headers):
            pass
        assert e.value.response.status_code == 403, headers
    for path in ("/schema", "/metadata", "/state", "/docs", "/openapi.json"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401 and "needs its token" in r.json()["detail"], path
    r = httpx.post(server.url + "/reset", json={"seed": 0})
    assert r.status_code == 401 and "Authorization: Bearer TOKEN" in r.json()["detail"]
    assert MADE == [] and server.env_server.active_sessions == 0  # nothing was made
    assert httpx.get(server.url + "/health").json() == {"status": "healthy"}  # open to all
    # the right token, as a Bearer header or as Basic auth's password (any user name)
    for headers in (AUTH, _basic("agent-envs", TOKEN), _basic("", TOKEN)):
        with _ws(server.url, headers) as ws:
            ws.send('{"type": "reset", "data": {"seed": 0}}')
            assert '"error":null' in ws.recv(timeout=10)
    assert len(MADE) == 3
    assert httpx.get(server.url + "/schema", headers=AUTH).status_code == 200
    authed = server.url.replace("http://", f"http://agent-envs:{TOKEN}@")
    assert httpx.get(authed + "/metadata").status_code == 200


def test_remote_takes_the_token_from_its_argument_or_the_environment(serve, monkeypatch
                                                                      ) -> None:
    server = serve("toy-digit")
    monkeypatch.delenv(TOKEN_ENV_VAR)
    with pytest.raises(ServerAuthError, match=r"needs a token and this client has none: pass "
                       r"token=TOKEN to agent_envs.remote, or set AGENT_ENVS_SERVER_TOKEN"):
        agent_envs.remote(server.url, "toy-digit").reset(seed=0)
    with pytest.raises(ServerAuthError, match=r"refused this client's token \(from the token "
                                              r"argument\)"):
        agent_envs.remote(server.url, "toy-digit", token="wrong").reset(seed=0)
    monkeypatch.setenv(TOKEN_ENV_VAR, "wrong")
    with pytest.raises(ServerAuthError, match=r"\(from AGENT_ENVS_SERVER_TOKEN\)"):
        agent_envs.remote(server.url, "toy-digit").reset(seed=0)
    for env in (agent_envs.remote(server.url, "toy-digit", token=TOKEN),  # argument wins
                (monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN),
                 agent_envs.remote(server.url, "toy-digit"))[1]):
        _, info = env.reset(seed=0)
        assert info["env_id"] == "toy-digit-v0"
        env.close()
    with pytest.raises(ValueError, match="token must be the server's token"):
        agent_envs.remote(server.url, "toy-digit", token="  ")


def test_the_collector_and_the_rollout_cli_pass_the_token_from_the_environment(
        serve, monkeypatch, capsys) -> None:
    """RolloutConfig.env_url, eval --env-url and train's env.url all build their envs with
    agent_envs.remote, which reads AGENT_ENVS_SERVER_TOKEN: a wrong one flags every
    episode with the fix, the right one runs them (the oracle gets its full task)."""
    from agent_envs.cli import main
    from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig

    server = serve("python-tool", env_kwargs={"sandbox": "local"})
    cfg = RolloutConfig(env_id="python-tool", num_groups=2, group_size=1, progress=False,
                        env_url=server.url)
    monkeypatch.setenv(TOKEN_ENV_VAR, "wrong")
    eps = RolloutCollector(OraclePolicy(), cfg).collect()
    assert [e.truncated_reason for e in eps] == ["infra", "infra"]
    assert all("refused this client's token (from AGENT_ENVS_SERVER_TOKEN)" in e.infra_error
               for e in eps)
    monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN)
    eps = RolloutCollector(OraclePolicy(), cfg).collect()
    assert [e.reward for e in eps] == [1.0, 1.0]
    assert main(["rollout", "python-tool", "--env-url", server.url, "--episodes", "2",
                 "--quiet"]) == 0
    assert "solved         2/2" in capsys.readouterr().out


def test_the_oracle_over_a_server_without_a_token_is_refused_with_the_fix(serve, monkeypatch,
                                                                         capsys) -> None:
    from agent_envs.cli import main

    server = serve("toy-digit", token=None)
    monkeypatch.delenv(TOKEN_ENV_VAR)
    assert main(["rollout", "toy-digit", "--env-url", server.url, "--episodes", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sends the full task (answer, solution, evidence) only to clients holding its " \
           "token" in err and "--token TOKEN" in err and "Traceback" not in err


def test_is_loopback() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.1.2.3", "example.org", "")))


def test_the_warning_is_for_a_server_reachable_beyond_loopback_without_a_token() -> None:
    from agent_envs.server.app import exposure_warning

    bare = ServerSettings(env_id="toy-digit")
    assert exposure_warning(bare, "127.0.0.1") is None and exposure_warning(bare, "::1") is None
    assert exposure_warning(ServerSettings(env_id="toy-digit", token="t"), "0.0.0.0") is None
    assert exposure_warning(bare, "0.0.0.0") == (
        "warning: serving on 0.0.0.0 without a token: anyone who can reach this port runs "
        "code in its sandboxes (and spends any live-browsing keys). Start it with --token "
        "TOKEN (or AGENT_ENVS_SERVER_TOKEN) and give clients the same token.")


def test_serve_on_all_interfaces_without_a_token_prints_the_warning(serve_process,
                                                                     monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV_VAR)
    bare = serve_process("toy-digit", "--host", "0.0.0.0")
    assert bare.preamble.startswith("warning: serving on 0.0.0.0 without a token")
    assert "no token" in bare.banner
    bare.kill()
    with_flag = serve_process("toy-digit", "--host", "0.0.0.0", "--token", "s3cret")
    assert with_flag.preamble == "" and "token required" in with_flag.banner
    env = agent_envs.remote(with_flag.url, "toy-digit", token="s3cret")
    _, info = env.reset(seed=0)
    assert info["env_id"] == "toy-digit-v0"
    env.close()


def test_a_token_in_the_url_never_shows_in_errors_or_infra_flags(serve, monkeypatch) -> None:
    """``http://agent-envs:TOKEN@HOST:PORT`` works as the token; the messages that name the
    server (an episode's infra_error, which eval bundles publish; reset's errors) print it
    with ``***`` for the token. Before, they printed the URL as given, token and all."""
    from agent_envs.server.protocol import ServerUnavailableError

    server = serve("toy-digit")
    monkeypatch.delenv(TOKEN_ENV_VAR)
    authed = server.url.replace("http://", f"http://agent-envs:{TOKEN}@")
    env = agent_envs.remote(authed, "toy-digit")
    env.reset(seed=0)  # the URL's password is the token: accepted
    server.stop()
    *_, truncated, info = env.step("<|channel|>final<|message|>3<|return|>")
    assert truncated and "lost the connection to the env server at" in info["infra_error"]
    assert TOKEN not in info["infra_error"] and "agent-envs:***@" in info["infra_error"]
    env.close()
    other = authed.rsplit(":", 1)[0] + ":9"  # nothing listens on the discard port
    for urls in (authed, [authed, other]):
        with pytest.raises(ServerUnavailableError) as e:
            agent_envs.remote(urls, "toy-digit", busy_timeout_s=0).reset(seed=0)
        assert TOKEN not in str(e.value) and "agent-envs:***@" in str(e.value), str(e.value)
