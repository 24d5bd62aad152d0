"""GraphClient over real HTTP against a small local server that answers like Meta."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from alfred.config import Secret
from alfred.whatsapp import errors as e
from alfred.whatsapp.graph import GraphClient, SendResult

TOKEN = Secret("EAAG-tenant-token-SECRET-1234")
APP_SECRET = Secret("app-secret-SECRET-5678")
PHONE_ID = "106540352242922"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"


@dataclass
class Canned:
    """What the fake Meta answers on one path: a status, a body, and an optional delay."""

    status: int
    body: object = None  # dict -> JSON, str/bytes -> raw, None -> empty
    delay_s: float = 0.0


@dataclass
class FakeMeta:
    """The routes the server answers and the requests it saw."""

    routes: dict[str, Canned] = field(default_factory=dict)
    seen: list[dict] = field(default_factory=list)
    url: str = ""


def meta_error(code: int, message: str, details: str = "details") -> dict:
    """Build a Graph error body."""
    return {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEf",
        }
    }


def _handler(meta: FakeMeta) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            meta.seen.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": parse_qs(parts.query),
                    "headers": dict(self.headers),
                    "body": raw,
                }
            )
            canned = meta.routes.get(f"{self.command} {parts.path}") or Canned(
                404, meta_error(100, "Unknown path")
            )
            if canned.delay_s:
                time.sleep(canned.delay_s)
            body = canned.body
            if isinstance(body, dict | list):
                payload, ctype = json.dumps(body).encode(), "application/json"
            elif isinstance(body, str):
                payload, ctype = body.encode(), "text/html"
            else:
                payload, ctype = body or b"", "text/plain"
            try:
                self.send_response(canned.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (read timeout test)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMeta]:
    meta = FakeMeta()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(meta))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    meta.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield meta
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def meta(server: FakeMeta) -> FakeMeta:
    server.routes.clear()
    server.seen.clear()
    return server


@pytest.fixture
def client(meta: FakeMeta) -> Iterator[GraphClient]:
    graph = GraphClient(meta.url, "v25.0", timeout=(1.0, 0.5))
    yield graph
    graph.close()


SEND = f"POST /v25.0/{PHONE_ID}/messages"
BODY = {
    "messaging_product": "whatsapp",
    "to": "+16505551234",
    "type": "text",
    "text": {"body": "hi"},
}


def test_send_message_returns_the_wamid(meta, client):
    meta.routes[SEND] = Canned(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": WAMID, "message_status": "accepted"}],
        },
    )
    result = client.send_message(PHONE_ID, TOKEN, BODY)
    assert isinstance(result, SendResult)
    assert (result.wamid, result.http_status, result.input, result.wa_id) == (
        WAMID,
        200,
        "+16505551234",
        "16505551234",
    )
    assert result.message_status == "accepted"
    request = meta.seen[-1]
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN.reveal()}"
    assert json.loads(request["body"]) == BODY
    assert TOKEN.reveal() not in repr(result)


def test_send_to_a_bsuid_reads_user_id(meta, client):
    meta.routes[SEND] = Canned(
        200,
        {
            "contacts": [
                {"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}
            ],
            "messages": [{"id": WAMID}],
        },
    )
    result = client.send_message(PHONE_ID, TOKEN, BODY)
    assert result.user_id == "US.13491208655302741918" and result.wa_id is None


def test_2xx_without_wamid_is_transient_and_maybe_delivered(meta, client):
    meta.routes[SEND] = Canned(200, {"messaging_product": "whatsapp"})
    with pytest.raises(e.MetaUnavailable) as caught:
        client.send_message(PHONE_ID, TOKEN, BODY)
    assert caught.value.may_have_been_delivered


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, 130429, e.RateLimitHit),
        (400, 131056, e.PairRateLimitHit),
        (400, 131047, e.ReEngagementRequired),
        (400, 131026, e.Undeliverable),
        (401, 190, e.AccessTokenError),
        (403, 368, e.TemporarilyBlocked),
        (400, 100, e.InvalidParameter),
        (404, 132001, e.TemplateError),
        (500, 131000, e.MetaUnavailable),
    ],
)
def test_meta_errors_raise_their_class(meta, client, status, code, cls):
    meta.routes[SEND] = Canned(status, meta_error(code, "title", "why"))
    with pytest.raises(cls) as caught:
        client.send_message(PHONE_ID, TOKEN, BODY)
    err = caught.value
    assert (err.code, err.http_status, err.details, err.fbtrace_id) == (
        code,
        status,
        "why",
        "AbCdEf",
    )
    assert_no_secret(err)


def test_http_500_without_body_is_meta_unavailable(meta, client):
    meta.routes[SEND] = Canned(500, None)
    with pytest.raises(e.MetaUnavailable) as caught:
        client.send_message(PHONE_ID, TOKEN, BODY)
    assert caught.value.code is None and caught.value.http_status == 500


def test_non_json_body_falls_back_on_status(meta, client):
    meta.routes[SEND] = Canned(502, "<html><body>Bad Gateway</body></html>")
    with pytest.raises(e.MetaUnavailable, match="Bad Gateway"):
        client.send_message(PHONE_ID, TOKEN, BODY)
    meta.routes[SEND] = Canned(400, "plain nonsense")
    with pytest.raises(e.PermanentError):
        client.send_message(PHONE_ID, TOKEN, BODY)


def test_a_body_echoing_the_token_is_scrubbed(meta, client):
    meta.routes[SEND] = Canned(401, meta_error(190, f"Bad token {TOKEN.reveal()}"))
    with pytest.raises(e.AccessTokenError) as caught:
        client.send_message(PHONE_ID, TOKEN, BODY)
    assert_no_secret(caught.value)
    assert "**********" in caught.value.message


def test_connection_refused_is_a_network_error_never_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    graph = GraphClient(f"http://127.0.0.1:{port}", "v25.0", timeout=(1.0, 1.0))
    with pytest.raises(e.NetworkError) as caught:
        graph.send_message(PHONE_ID, TOKEN, BODY)
    assert caught.value.retryable and not caught.value.may_have_been_delivered
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_no_secret(caught.value)


def test_read_timeout_is_a_network_error_maybe_delivered(meta, client):
    meta.routes[SEND] = Canned(200, {"messages": [{"id": WAMID}]}, delay_s=1.5)
    started = time.monotonic()
    with pytest.raises(e.NetworkError) as caught:
        client.send_message(PHONE_ID, TOKEN, BODY)
    assert time.monotonic() - started < 1.4
    assert caught.value.may_have_been_delivered
    assert_no_secret(caught.value)


def test_mark_as_read_with_typing_indicator(meta, client):
    meta.routes[SEND] = Canned(200, {"success": True})
    assert client.mark_as_read(PHONE_ID, TOKEN, WAMID, typing_indicator=True) is True
    assert json.loads(meta.seen[-1]["body"]) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": WAMID,
        "typing_indicator": {"type": "text"},
    }
    client.mark_as_read(PHONE_ID, TOKEN, WAMID)
    assert "typing_indicator" not in json.loads(meta.seen[-1]["body"])


def test_upload_media_posts_multipart(meta, client):
    meta.routes[f"POST /v25.0/{PHONE_ID}/media"] = Canned(200, {"id": "4490709327384033"})
    media_id = client.upload_media(PHONE_ID, TOKEN, b"\x89PNG data", "image/png", "a.png")
    assert media_id == "4490709327384033"
    request = meta.seen[-1]
    assert request["headers"]["Content-Type"].startswith("multipart/form-data")
    assert b'name="messaging_product"' in request["body"] and b"whatsapp" in request["body"]
    assert b'filename="a.png"' in request["body"] and b"\x89PNG data" in request["body"]


def test_get_media_url(meta, client):
    info = {"url": "https://lookaside.fbsbx.com/x", "mime_type": "image/jpeg", "id": "137"}
    meta.routes["GET /v25.0/137"] = Canned(200, info)
    assert client.get_media_url("137", TOKEN) == info


def test_list_templates_follows_cursors(meta, client):
    path = "GET /v25.0/waba1/message_templates"
    meta.routes[path] = Canned(
        200,
        {"data": [{"name": "a"}], "paging": {"cursors": {"after": "C1"}, "next": "https://x"}},
    )
    # The server answers the same page each time; the client stops after max_pages.
    assert [t["name"] for t in client.list_templates("waba1", TOKEN, max_pages=3)] == ["a"] * 3
    assert meta.seen[-1]["query"]["after"] == ["C1"]
    meta.routes[path] = Canned(200, {"data": [{"name": "b"}], "paging": {"cursors": {}}})
    assert client.list_templates("waba1", TOKEN) == [{"name": "b"}]


def test_create_template(meta, client):
    meta.routes["POST /v25.0/waba1/message_templates"] = Canned(
        200, {"id": "572279198452421", "status": "PENDING", "category": "UTILITY"}
    )
    template = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [],
    }
    assert client.create_template("waba1", TOKEN, template)["status"] == "PENDING"
    assert json.loads(meta.seen[-1]["body"]) == template


def test_debug_token_sends_the_app_token_in_the_query(meta, client):
    # Not a header: an app secret with non-ASCII characters cannot be one (latin-1).
    meta.routes["GET /v25.0/debug_token"] = Canned(
        200,
        {"data": {"is_valid": True, "expires_at": 0, "scopes": ["whatsapp_business_messaging"]}},
    )
    app_token = Secret("123|app-token-SECRET")
    data = client.debug_token(TOKEN, app_token)
    assert data["is_valid"] is True
    request = meta.seen[-1]
    assert "Authorization" not in request["headers"]
    assert request["query"]["access_token"] == ["123|app-token-SECRET"]
    assert request["query"]["input_token"] == [TOKEN.reveal()]


def test_exchange_token_returns_a_secret(meta, client, caplog):
    meta.routes["GET /v25.0/oauth/access_token"] = Canned(
        200,
        {"access_token": "EAAG-long-lived-SECRET", "token_type": "bearer", "expires_in": 5183944},
    )
    with caplog.at_level(logging.DEBUG):
        new_token, expires_in = client.exchange_token("4242", APP_SECRET, TOKEN)
    assert isinstance(new_token, Secret) and new_token.reveal() == "EAAG-long-lived-SECRET"
    assert expires_in == 5183944
    query = meta.seen[-1]["query"]
    assert query["grant_type"] == ["fb_exchange_token"] and query["client_id"] == ["4242"]
    assert query["client_secret"] == [APP_SECRET.reveal()]
    assert query["fb_exchange_token"] == [TOKEN.reveal()]
    assert "Authorization" not in meta.seen[-1]["headers"]
    # urllib3 logs the request line, query included, at DEBUG: the secrets must be blanked.
    assert "oauth/access_token" in caplog.text
    for secret in (APP_SECRET.reveal(), TOKEN.reveal(), "EAAG-long-lived-SECRET"):
        assert secret not in caplog.text


def test_exchange_token_failure_hides_the_secrets(meta, client, caplog):
    meta.routes["GET /v25.0/oauth/access_token"] = Canned(
        400, meta_error(190, f"Error validating client secret {APP_SECRET.reveal()}")
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(e.AccessTokenError) as caught:
        client.exchange_token("4242", APP_SECRET, TOKEN)
    assert_no_secret(caught.value, APP_SECRET)
    assert APP_SECRET.reveal() not in caplog.text and TOKEN.reveal() not in caplog.text


def test_network_error_on_exchange_does_not_leak_the_query():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    graph = GraphClient(f"http://127.0.0.1:{port}", "v25.0", timeout=(1.0, 1.0))
    with pytest.raises(e.NetworkError) as caught:
        graph.exchange_token("4242", APP_SECRET, TOKEN)
    assert_no_secret(caught.value, APP_SECRET)


def test_client_repr_has_no_secret(client):
    assert "SECRET" not in repr(client)


def assert_no_secret(exc: BaseException, *extra: Secret) -> None:
    """Check the exception's str, repr, args and record for every secret value."""
    texts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    if isinstance(exc, e.GraphError):
        texts.append(json.dumps(exc.as_record()))
    for secret in (TOKEN, *extra):
        for text in texts:
            assert secret.reveal() not in text


def test_proxies_and_ca_bundle_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    client = GraphClient("https://graph.facebook.com", "v25.0")
    assert client.session.proxies.get("https") == "http://proxy.internal:3128"
    assert client.session.verify == "/etc/ssl/corporate.pem"
    # Read once: later changes to the environment do not reach a running client.
    assert client.session.trust_env is False
    local = GraphClient("https://localhost:8443", "v25.0")
    assert "https" not in local.session.proxies


def test_calls_go_through_the_proxy_the_environment_names(meta, monkeypatch):
    meta.routes[SEND] = Canned(
        200, {"messaging_product": "whatsapp", "messages": [{"id": WAMID}], "contacts": [{}]}
    )
    monkeypatch.setenv("HTTP_PROXY", meta.url)  # the fake Meta stands in for the proxy too
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    graph = GraphClient("http://graph.example.invalid", "v25.0", timeout=(1.0, 0.5))
    try:
        assert graph.send_message(PHONE_ID, TOKEN, {"type": "text"}).wamid == WAMID
    finally:
        graph.close()
    (seen,) = meta.seen
    assert seen["headers"]["Host"] == "graph.example.invalid"
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN.reveal()}"
    assert "python-requests" in seen["headers"]["User-Agent"]
