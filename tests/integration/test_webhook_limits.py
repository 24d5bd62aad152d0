"""What the edge refuses before any work grows: odd signatures, NaN, deep nesting, huge counts."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.ingest.limits import MAX_CHANGES, MAX_DEPTH, MAX_EVENTS, depth_of
from alfred.ingest.receive import ingest_journal
from alfred.models import QuarantinedEvent
from alfred.streams import INGEST_STREAM
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers


def _post(web, body: bytes, headers: dict):
    return web.post("/webhook", data=body, headers=headers)


def _nothing_kept(redis_client) -> bool:
    return ingest_journal(redis_client).size() == 0 and redis_client.xlen(INGEST_STREAM) == 0


def _held(database_url) -> list[tuple[str, str]]:
    with session_scope(database_url) as session:
        rows = session.scalars(select(QuarantinedEvent)).all()
        return [(row.reason, row.detail) for row in rows]


@pytest.mark.parametrize(
    "header",
    [
        "sha256=\xe9" + "0" * 63,  # one latin-1 byte, as WSGI hands a non-ASCII header over
        "sha256=" + "é" * 64,
        "sha256=" + "0" * 63 + "\x00",
        "sha256= " + "0" * 64,
    ],
)
def test_a_non_ascii_or_odd_signature_header_is_a_plain_403(web, redis_client, header):
    body = body_of(fixture("text"))
    answer = _post(web, body, {"Content-Type": "application/json", "X-Hub-Signature-256": header})
    assert answer.status_code == 403
    assert answer.get_json()["error"] == "bad_signature"
    assert _nothing_kept(redis_client)


def _nested_text(levels: int) -> bytes:
    """A valid text message carrying an extra key nested `levels` arrays deep (written as text:
    the encoder itself gives up near 1,000 levels)."""
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["extra"] = "HERE"
    return body_of(payload).replace(b'"HERE"', b"[" * levels + b'"deep"' + b"]" * levels)


@pytest.mark.parametrize(
    "body",
    [b"[" * 1000 + b"]" * 1000, _nested_text(970), _nested_text(MAX_DEPTH)],
    ids=["bare-1000", "inside-a-message-970", "just-over-the-cap"],
)
def test_deep_nesting_is_refused_with_400_and_quarantined(web, redis_client, env, body):
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "too_deep"
    assert f"limit is {MAX_DEPTH}" in answer.get_json()["detail"]
    assert _nothing_kept(redis_client)
    assert [reason for reason, _ in _held(env["DATABASE_URL"])] == ["too_deep"]


def test_nesting_up_to_the_cap_is_accepted(web, redis_client):
    body = _nested_text(MAX_DEPTH - 10)
    assert depth_of(body) <= MAX_DEPTH
    assert _post(web, body, signed_headers(body, APP_SECRET)).status_code == 200


def test_brackets_inside_strings_do_not_count_as_depth():
    text = json.dumps({"a": "[[[[{{{{" * 100 + '\\"[[[', "b": [[1]]}).encode()
    assert depth_of(text) == 3


def _location(latitude: str, longitude: str) -> bytes:
    body = body_of(fixture("location"))
    payload = json.loads(body)
    loc = payload["entry"][0]["changes"][0]["value"]["messages"][0]["location"]
    text = json.dumps(payload)
    return (
        text.replace(json.dumps(loc["latitude"]), latitude, 1)
        .replace(json.dumps(loc["longitude"]), longitude, 1)
        .encode()
    )


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [("NaN", "Infinity"), ("-Infinity", "1.0"), ("1e999", "2.0"), ("1.0", "-1e400")],
)
def test_nan_and_infinity_never_reach_the_stream(web, redis_client, env, latitude, longitude):
    body = _location(latitude, longitude)
    assert latitude.encode() in body
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_json"
    assert "RFC 8259" in answer.get_json()["detail"] or "double" in answer.get_json()["detail"]
    assert _nothing_kept(redis_client)
    assert [reason for reason, _ in _held(env["DATABASE_URL"])] == ["invalid_json"]


def test_a_ten_thousand_digit_integer_names_pythons_digit_limit(web, redis_client, env):
    body = b'{"object":"whatsapp_business_account","entry":[],"n":' + b"9" * 10_000 + b"}"
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    detail = answer.get_json()["detail"]
    assert answer.get_json()["error"] == "invalid_json"
    assert "10000 digits" in detail and "Python's limit" in detail
    assert _nothing_kept(redis_client)


def test_too_many_changes_or_events_get_413_and_are_quarantined(web, redis_client, env):
    payload = fixture("text")
    change = payload["entry"][0]["changes"][0]
    payload["entry"][0]["changes"] = [change] * (MAX_CHANGES + 1)
    body = body_of(payload)
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 413
    assert answer.get_json()["error"] == "too_many_items"
    payload = fixture("status_delivered")
    value = payload["entry"][0]["changes"][0]["value"]
    value["statuses"] = value["statuses"] * (MAX_EVENTS + 1)
    body = body_of(payload)
    answer = _post(web, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 413
    assert "messages and statuses" in answer.get_json()["detail"]
    assert _nothing_kept(redis_client)
    assert sorted(r for r, _ in _held(env["DATABASE_URL"])) == ["too_many_items"] * 2
