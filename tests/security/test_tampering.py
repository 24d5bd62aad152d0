"""Any change to a signed body or to its signature is a 403 that stores nothing (hypothesis)."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from alfred.db import session_scope
from alfred.ingest.receive import ingest_journal
from alfred.models import QuarantinedEvent
from alfred.streams import INGEST_STREAM
from alfred.whatsapp import signature
from tests.conftest import APP_SECRET, VERIFY_TOKEN
from tests.helpers import body_of, fixture, signed_headers

# Function-scoped fixtures (the test client, Redis) are shared by every example on purpose:
# nothing may be stored, so there is nothing to reset between examples.
BOUNDED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Refusal happens before any database is touched: one database suffices (PostgreSQL, the real one).
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
BODY = body_of(fixture("text", fresh=False))
HEADER = signed_headers(BODY, APP_SECRET)["X-Hub-Signature-256"]


@st.composite
def tampered_bodies(draw) -> bytes:
    """The signed body with one byte flipped, inserted, deleted, or a slice cut or doubled."""
    body = bytearray(BODY)
    at = draw(st.integers(0, len(body) - 1))
    kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    if kind == "flip":
        body[at] ^= draw(st.integers(1, 255))
    elif kind == "insert":
        body.insert(at, draw(st.integers(0, 255)))
    elif kind == "delete":
        del body[at]
    elif kind == "truncate":
        del body[at:]
    else:
        body += draw(st.binary(min_size=1, max_size=20))
    return bytes(body)


@st.composite
def tampered_headers(draw) -> str:
    """The right header changed: a digit altered, cut, lengthened, re-cased prefix, other hash."""
    digest = HEADER[len("sha256=") :]
    kind = draw(st.sampled_from(["digit", "cut", "extend", "prefix", "random", "text"]))
    if kind == "digit":
        at = draw(st.integers(0, 63))
        new = draw(st.sampled_from("0123456789abcdef").filter(lambda c: c != digest[at]))
        return "sha256=" + digest[:at] + new + digest[at + 1 :]
    if kind == "cut":
        return "sha256=" + digest[: draw(st.integers(0, 63))]
    if kind == "extend":
        return "sha256=" + digest + draw(st.text("0123456789abcdef", min_size=1, max_size=8))
    if kind == "prefix":
        return draw(st.sampled_from(["sha1=", "SHA256=", "sha512=", "", "sha256:"])) + digest
    if kind == "random":
        return "sha256=" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    return draw(st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=80))


def _stored_nothing(redis_client, database_url) -> bool:
    with session_scope(database_url) as session:
        held = session.scalar(select(func.count()).select_from(QuarantinedEvent))
    return (
        ingest_journal(redis_client).size() == 0
        and not redis_client.xlen(INGEST_STREAM)
        and not held
    )


def test_the_untampered_delivery_is_accepted(web):
    assert (
        web.post("/webhook", data=BODY, headers=signed_headers(BODY, APP_SECRET)).status_code == 200
    )


@BOUNDED
@given(body=tampered_bodies())
def test_any_change_to_the_body_is_refused(web, redis_client, env, body):
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": HEADER}
    answer = web.post("/webhook", data=body, headers=headers)
    assert answer.status_code == 403, body
    assert _stored_nothing(redis_client, env["DATABASE_URL"])


@BOUNDED
@given(header=tampered_headers())
def test_any_change_to_the_signature_is_refused(web, redis_client, env, header):
    if header.strip().lower() == HEADER:
        return  # "SHA256=" prefixes aside, only a different header counts as tampering
    answer = web.post(
        "/webhook",
        data=BODY,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": header},
    )
    assert answer.status_code == 403, header
    assert _stored_nothing(redis_client, env["DATABASE_URL"])


def test_signature_and_verify_token_are_compared_in_constant_time(web, monkeypatch):
    compared: list[tuple[type, type]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    assert (
        web.post("/webhook", data=BODY, headers=signed_headers(BODY, APP_SECRET)).status_code == 200
    )
    # Both accepted secrets (current and previous) are compared, as bytes, with no early exit.
    assert compared == [(bytes, bytes), (bytes, bytes)]
    compared.clear()
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"}
    assert web.get("/webhook", query_string=query).status_code == 200
    assert compared == [(bytes, bytes)]
