"""POST/GET /webhook against real Redis and both databases: what is refused, what is kept."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.ingest.receive import decode_record, ingest_journal
from alfred.metrics import render as render_metrics
from alfred.models import QuarantinedEvent
from alfred.streams import INGEST_STREAM
from tests.conftest import APP_SECRET, PREVIOUS_APP_SECRET, VERIFY_TOKEN
from tests.helpers import body_of, fixture, signed_headers


def test_handshake_answers_the_challenge_with_metas_parameter_names(web):
    answer = web.get(
        "/webhook",
        query_string={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "1158201444"
    assert answer.mimetype == "text/plain"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        # The seed's sketch read these names; Meta never sends them.
        {"mode": "subscribe", "verify_token": VERIFY_TOKEN, "challenge": "1"},
    ],
)
def test_handshake_refuses_anything_else(web, query):
    assert web.get("/webhook", query_string=query).status_code == 403


def _post(web, body: bytes, headers: dict):
    return web.post("/webhook", data=body, headers=headers)


def _nothing_kept(redis_client) -> bool:
    return ingest_journal(redis_client).size() == 0 and redis_client.xlen(INGEST_STREAM) == 0


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "sha256=zz" + "0" * 62, "garbage"],
)
def test_missing_malformed_or_wrong_signatures_get_403_and_keep_nothing(web, redis_client, header):
    body = body_of(fixture("text"))
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    answer = _post(web, body, headers)
    assert answer.status_code == 403
    assert answer.get_json()["error"] == "bad_signature"
    assert _nothing_kept(redis_client)


def test_a_body_signed_with_another_secret_is_refused(web, redis_client):
    body = body_of(fixture("text"))
    assert _post(web, body, signed_headers(body, "not-the-secret")).status_code == 403
    assert _nothing_kept(redis_client)


def test_a_body_changed_after_signing_is_refused(web, redis_client):
    body = body_of(fixture("text"))
    headers = signed_headers(body, APP_SECRET)
    assert _post(web, body.replace(b"Ada", b"Eve"), headers).status_code == 403
    assert _nothing_kept(redis_client)


@pytest.mark.parametrize("secret", [APP_SECRET, PREVIOUS_APP_SECRET])
@pytest.mark.parametrize("escape", [False, True], ids=["utf8", "u-escaped"])
def test_non_ascii_bodies_verify_as_utf8_or_escaped_with_either_secret(
    web, redis_client, secret, escape
):
    body = body_of(fixture("non_ascii"), escape=escape)
    assert (b"\\u" in body) is escape
    answer = _post(web, body, signed_headers(body, secret))
    assert answer.status_code == 200, answer.get_json()
    journal = ingest_journal(redis_client)
    (delivery_id,) = [k.decode() for k in redis_client.hkeys(journal.records_key)]
    assert answer.get_json()["delivery_id"] == delivery_id
    received_at, kept = decode_record(journal.get(delivery_id))
    assert kept == body  # byte for byte, as signed
    assert received_at > 0


def test_a_valid_delivery_is_journaled_and_enqueued_before_200(web, redis_client):
    body = body_of(fixture("text"))
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 200
    assert ingest_journal(redis_client).size() == 1
    queued = [json.loads(m) for m in redis_client.lrange("ingest", 0, -1)]
    assert len(queued) == 1
    assert queued[0]["headers"]["task"] == "alfred.ingest_delivery"
    assert queued[0]["headers"]["argsrepr"] == repr([answer.get_json()["delivery_id"]])


def test_bodies_over_the_limit_get_413(web, redis_client):
    body = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"x" * (5 << 20) + b'"}'
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 413
    assert _nothing_kept(redis_client)


def test_a_three_megabyte_payload_is_accepted(web, redis_client):
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "é" * (1_500_000)
    body = body_of(payload)
    assert len(body) > 3_000_000
    assert _post(web, body, signed_headers(body, APP_SECRET)).status_code == 200


def test_a_wrong_content_type_gets_415(web, redis_client):
    body = body_of(fixture("text"))
    headers = {**signed_headers(body, APP_SECRET), "Content-Type": "text/plain"}
    answer = _post(web, body, headers)
    assert answer.status_code == 415
    assert answer.get_json()["error"] == "bad_content_type"
    assert _nothing_kept(redis_client)


@pytest.mark.parametrize(
    "body", [b'{"object": "whatsapp_business_account", "entry": [', b"\xff\xfe", b""]
)
def test_signed_bodies_that_are_not_json_get_400_and_are_quarantined(web, redis_client, env, body):
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_json"
    assert _nothing_kept(redis_client)
    with session_scope(env["DATABASE_URL"]) as session:
        rows = session.scalars(select(QuarantinedEvent)).all()
        assert [r.reason for r in rows] == ["invalid_json"]
    # Meta retries the same broken body: it is kept once.
    _post(web, body, signed_headers(body, APP_SECRET))
    with session_scope(env["DATABASE_URL"]) as session:
        assert len(session.scalars(select(QuarantinedEvent)).all()) == 1


def test_without_an_app_secret_every_post_is_refused(web, redis_client, monkeypatch):
    from alfred import runtime

    monkeypatch.delenv("META_APP_SECRET")
    monkeypatch.delenv("META_APP_SECRET_PREVIOUS")
    runtime.reset()
    body = body_of(fixture("text"))
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 403
    assert answer.get_json()["error"] == "no_app_secret"


def test_503_when_redis_is_unreachable_so_meta_retries(web, monkeypatch):
    from alfred import runtime
    from tests.conftest import free_port

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    runtime.reset()
    body = body_of(fixture("text"))
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "unavailable"


def test_health_ready_and_metrics(web, redis_client):
    assert web.get("/healthz").status_code == 200
    ready = web.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"] == {"redis": "ok", "database": "ok"}
    body = body_of(fixture("text"))
    _post(web, body, signed_headers(body, "wrong"))
    # Counted, and shown on the metrics port only: the public port has no /metrics.
    assert web.get("/metrics").status_code == 404
    metrics = render_metrics()[0].decode()
    assert 'alfred_webhook_requests_total{outcome="bad_signature"}' in metrics


def test_an_unknown_number_is_named_at_the_edge_and_kept_for_quarantine(web, redis_client):
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "424242"
    body = body_of(payload)
    assert _post(web, body, signed_headers(body, APP_SECRET)).status_code == 200
    assert ingest_journal(redis_client).size() == 1  # kept: the worker quarantines it
    metrics = render_metrics()[0].decode()
    assert 'alfred_webhook_requests_total{outcome="unknown_number"}' in metrics


def test_the_edge_resolves_tenants_by_number_and_by_waba(settings):
    from alfred.ingest.receive import tenants_at_the_edge

    assert tenants_at_the_edge(fixture("batch_after_outage"), settings) == ({"home", "biz"}, set())
    assert tenants_at_the_edge(fixture("account_update"), settings)[0] == {"home"}
    assert tenants_at_the_edge({"entry": "nonsense"}, settings) == (set(), set())
