"""The live backend against an HTTP server on 127.0.0.1 (no other address is touched), and
record/replay cassettes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import agent_envs
from agent_envs.envs.browser.backends import BackendError, BackendUnavailable
from agent_envs.envs.browser.cassette import RecordingBackend, ReplayBackend
from agent_envs.envs.browser.live import ExaProvider, LiveBackend, LiveConfig, YouComProvider
from agent_envs.envs.browser.page import page_from_html
from agent_envs.envs.browser.tool import BrowserTool
from tests.agent_envs.browser.html_fixtures import fixture_pages
from tests.agent_envs.browser.reference import make_reference_tool, reference_call

PAGES = {f"/p{i}": html for i, (html, _t) in enumerate(list(fixture_pages().values())[:8])}
SEEN: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _send(self, code, body, ctype="text/html; charset=utf-8", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the client gave up (the timeout test)
            pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in PAGES:
            return self._send(200, PAGES[path])
        if path == "/redirect":
            return self._send(302, "", headers=[("location", "/p0")])
        if path == "/loop":
            return self._send(302, "", headers=[("location", "/loop")])
        if path == "/plain":
            return self._send(200, "plain text\nsecond line", "text/plain")
        if path == "/pdf":
            return self._send(200, b"%PDF-1.4", "application/pdf")
        if path == "/big":
            return self._send(200, "<p>" + "x " * 200_000 + "</p>")
        if path == "/slow":
            import time
            time.sleep(1.0)
            try:
                return self._send(200, "<p>late</p>")
            except (BrokenPipeError, ConnectionResetError):
                return None
        if path == "/v1/search":
            SEEN.append({"path": path, "key": self.headers.get("x-api-key"), "q": self.path})
            return self._send(200, json.dumps({"results": {"web": [
                {"title": "Web one", "url": "https://a.example/1", "snippets": ["s1", "s2"]}],
                "news": [{"title": "News", "url": "https://b.example/n", "description": "d"}]}}),
                "application/json")
        return self._send(404, "<p>not found</p>")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        SEEN.append({"path": self.path, "key": self.headers.get("x-api-key"), "body": body})
        if self.path == "/search":
            return self._send(200, json.dumps({"results": [
                {"title": "First <hit>", "url": "https://a.example/x", "summary": "Summary one."},
                {"title": "Second", "url": "https://b.example/y", "summary": "Two."}]}),
                "application/json")
        return self._send(500, "boom")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_html_matches_the_reference_conversion(server):
    with_live = LiveBackend()
    try:
        for path, html in PAGES.items():
            page = with_live.fetch(server + path)
            expected = page_from_html(html, server + path, None, display_urls=True)
            assert page == expected
        # and the reference tool shows those same bytes for the same HTML
        docs = {server + p: (h, "") for p, h in PAGES.items()}
        ref = make_reference_tool(docs, {})
        ours = BrowserTool(with_live)
        for url in docs:
            args = json.dumps({"id": url})
            assert ours.call("open", args).text == reference_call(ref, "open", args)
    finally:
        with_live.close()


def test_redirects_content_types_size_cap_timeouts_and_errors(server):
    live = LiveBackend(config=LiveConfig(timeout_s=0.3, max_bytes=50_000, max_redirects=3))
    try:
        assert live.fetch(server + "/redirect").url == server + "/p0"
        assert "plain text\nsecond line" in live.fetch(server + "/plain").text
        with pytest.raises(BackendError, match="unsupported content type 'application/pdf'"):
            live.fetch(server + "/pdf")
        with pytest.raises(BackendError, match="too many redirects"):
            live.fetch(server + "/loop")
        with pytest.raises(BackendError, match="HTTP 404"):
            live.fetch(server + "/missing")
        with pytest.raises(BackendError, match="timed out after 0.3 s"):
            live.fetch(server + "/slow")
        with pytest.raises(BackendError, match="only http"):
            live.fetch("ftp://127.0.0.1/x")
        assert len(live.fetch(server + "/big").text) < 50_100
    finally:
        live.close()


def test_search_providers_send_the_references_requests(server, monkeypatch):
    monkeypatch.setenv("EXA_API_KEY", "exa-test-key")
    live = LiveBackend(ExaProvider(base_url=server))
    page = live.search("who", 20)
    assert SEEN[-1]["key"] == "exa-test-key"
    assert SEEN[-1]["body"] == {"query": "who", "numResults": 20,
                                "contents": {"text": True, "summary": True}}
    assert "【1†Second†b.example】 Two." in page.text and page.title == "who"
    live.close()
    you = LiveBackend(YouComProvider(api_key="ydc", base_url=server))
    page = you.search("what", 5)
    assert "count=5" in SEEN[-1]["q"] and SEEN[-1]["key"] == "ydc"
    assert "【0†Web one†a.example】 s1 s2" in page.text and "【1†News†b.example】 d" in page.text
    you.close()


def test_missing_api_key_is_an_infra_error_and_an_http_error_is_the_models(server, monkeypatch):
    monkeypatch.delenv("EXA_API_KEY", raising=False)
    live = LiveBackend(ExaProvider(base_url=server))
    with pytest.raises(BackendUnavailable, match="set EXA_API_KEY"):
        live.search("x", 3)
    live.close()
    failing = LiveBackend(ExaProvider(api_key="k", base_url=server + "/nope"))
    with pytest.raises(BackendError, match="Exa error 500: boom"):
        failing.search("x", 3)
    failing.close()


def test_record_then_replay_byte_exactly_and_a_miss_is_infra(server, tmp_path):
    cassette = tmp_path / "session.jsonl"
    calls = [("search", {"query": "who"}), ("open", {"id": 0}),
             ("open", {"id": server + "/p1"}), ("open", {"id": server + "/missing"}),
             ("find", {"pattern": "the", "cursor": 2})]
    recorder = RecordingBackend(LiveBackend(ExaProvider(api_key="k", base_url=server)),
                                cassette)
    live_tool = BrowserTool(recorder)
    recorded = [live_tool.call(f, json.dumps(a)).text for f, a in calls]
    recorder.close()
    assert "Error fetching URL" in recorded[3]
    replay_tool = BrowserTool(ReplayBackend(cassette))
    assert [replay_tool.call(f, json.dumps(a)).text for f, a in calls] == recorded
    missing = replay_tool.call("open", json.dumps({"id": server + "/p5"}))
    assert missing.infra_error is not None and "has no fetch" in missing.infra_error
    # through the env: the miss ends the episode flagged as infra
    env = agent_envs.make("browser", backend=ReplayBackend(cassette))
    env.reset(seed=0)
    _, _, _term, trunc, info = env.step(
        '<|channel|>analysis to=browser.search code<|message|>{"query": "never"}<|call|>')
    assert trunc and info["truncated_reason"] == "infra" and "no search" in info["infra_error"]
    env.close()


async def test_async_twins_fetch_search_and_record_the_same(server, tmp_path):
    live = LiveBackend(ExaProvider(api_key="k", base_url=server),
                       config=LiveConfig(timeout_s=0.3, max_redirects=3))
    try:
        for path in PAGES:
            assert await live.afetch(server + path) == live.fetch(server + path)
        assert (await live.asearch("who", 20)) == live.search("who", 20)
        assert (await live.afetch(server + "/redirect")).url == server + "/p0"
        with pytest.raises(BackendError, match="timed out after 0.3 s"):
            await live.afetch(server + "/slow")
        with pytest.raises(BackendError, match="too many redirects"):
            await live.afetch(server + "/loop")
    finally:
        await live.aclose()
    cassette = tmp_path / "async.jsonl"
    recorder = RecordingBackend(LiveBackend(ExaProvider(api_key="k", base_url=server)), cassette)
    tool = BrowserTool(recorder)
    calls = [("search", {"query": "who"}), ("open", {"id": server + "/p2"}),
             ("open", {"id": server + "/missing"})]
    recorded = [(await tool.acall(f, json.dumps(a))).text for f, a in calls]
    await recorder.aclose()
    replay = BrowserTool(ReplayBackend(cassette))
    assert [(await replay.acall(f, json.dumps(a))).text for f, a in calls] == recorded
