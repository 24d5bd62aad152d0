"""One bad item rejects only itself: a lone surrogate, a NUL, NaN beside valid siblings."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from alfred import runtime
from alfred.db import session_scope
from alfred.ingest.receive import FAILURES_KEY, ingest_journal
from alfred.ingest.replay import replay
from alfred.ingest.service import ingest_body
from alfred.models import Message, QuarantinedEvent
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers
from tests.integration.test_cli import alfred
from tests.integration.test_ingest_pipeline import stream_entries, wait_for

BAD_TEXTS = {
    "lone-surrogate": ("\\udc00", "lone surrogate"),
    "nul": ("a\\u0000b", "NUL character"),
    "high-surrogate-alone": ("x\\ud83dy", "lone surrogate"),
}


def _two_texts(bad_escape: str) -> bytes:
    """A delivery of two text messages whose second body is the given JSON escape, verbatim."""
    payload = fixture("text")
    value = payload["entry"][0]["changes"][0]["value"]
    good = value["messages"][0]
    bad = {**good, "id": good["id"] + "-bad", "text": {"body": "PLACEHOLDER"}}
    value["messages"] = [good, bad]
    return body_of(payload).replace(b'"PLACEHOLDER"', b'"' + bad_escape.encode() + b'"')


def _held(database_url) -> list[QuarantinedEvent]:
    with session_scope(database_url) as session:
        rows = list(session.scalars(select(QuarantinedEvent)))
        session.expunge_all()
        return rows


@pytest.mark.parametrize("bad", list(BAD_TEXTS), ids=list(BAD_TEXTS))
def test_a_bad_text_rejects_only_itself_through_the_worker(
    web, celery_worker, redis_client, env, bad
):
    escape, why = BAD_TEXTS[bad]
    body = _two_texts(escape)
    assert (
        web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET)).status_code == 200
    )
    entries = wait_for(lambda: stream_entries(redis_client))
    wait_for(lambda: ingest_journal(redis_client).size() == 0)
    good_id = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert [e["envelope"]["id"] for e in entries] == [good_id]
    (row,) = _held(env["DATABASE_URL"])
    assert row.reason == "invalid_payload"
    assert why in row.detail
    assert not redis_client.hgetall(FAILURES_KEY)  # rejected at once, never retried as a failure
    with session_scope(env["DATABASE_URL"]) as session:
        assert session.scalars(select(Message.wamid)).all() == [good_id]

    # Replaying it says it is still rejected, with no traceback, and appends nothing twice.
    assert replay(row.id, settings=runtime.settings(), client=redis_client).startswith(
        "still invalid_payload"
    )
    assert len(stream_entries(redis_client)) == 1


def test_quarantine_replay_of_a_bad_item_says_so_in_one_line(settings, redis_client, env):
    body = _two_texts("\\udc00")
    outcome = ingest_body(body, received_at=time.time(), settings=settings, client=redis_client)
    assert (outcome.appended, len(outcome.quarantined)) == (1, 1)
    (row,) = _held(env["DATABASE_URL"])
    replayed = alfred("quarantine", "replay", str(row.id), env=env)
    assert replayed.returncode == 1
    assert replayed.stdout.startswith(f"{row.id}: still invalid_payload")
    assert "Traceback" not in replayed.stderr


def test_nan_in_an_old_journal_entry_is_rejected_alone(settings, redis_client, env, monkeypatch):
    """Bodies journaled before the edge refused NaN still reach the worker: it rejects the item."""
    from alfred.ingest import service

    payload = fixture("location")
    value = payload["entry"][0]["changes"][0]["value"]
    good = value["messages"][0]
    bad = {**good, "id": good["id"] + "-nan", "location": {**good["location"], "latitude": "X"}}
    value["messages"] = [good, bad]
    body = body_of(payload).replace(b'"latitude": "X"', b'"latitude": NaN')
    # What the worker's parser did before it refused NaN: plain json.loads.
    monkeypatch.setattr(service, "parse_delivery", json.loads)
    outcome = ingest_body(body, received_at=time.time(), settings=settings, client=redis_client)
    assert outcome.appended == 1
    (row,) = _held(env["DATABASE_URL"])
    assert "which JSON cannot express" in row.detail
    (entry,) = stream_entries(redis_client)
    assert entry["envelope"]["id"] == good["id"]
    assert "NaN" not in entry["payload"]
