"""Late events: a late duplicate is a duplicate; a late new one follows WEBHOOK_STALE_POLICY."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from alfred import runtime
from alfred.config import ConfigError, Settings
from alfred.db import session_scope
from alfred.ingest.service import ingest_body
from alfred.models import QuarantinedEvent
from tests.helpers import body_of, fixture
from tests.integration.test_ingest_pipeline import stream_entries

DAY = 24 * 3600


def _reasons(database_url) -> list[str]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(QuarantinedEvent.reason)))


def _ingest(body, received_at):
    return ingest_body(
        body, received_at=received_at, settings=runtime.settings(), client=runtime.redis_client()
    )


@pytest.fixture
def deliver_late(monkeypatch, env):
    monkeypatch.setenv("WEBHOOK_STALE_POLICY", "deliver")
    runtime.reset()
    yield
    runtime.reset()


def test_an_identical_delivery_15_s_later_is_a_duplicate_not_a_quarantine(env, redis_client):
    sent = int(time.time())
    body = body_of(fixture("text", now=sent))
    first = _ingest(body, sent + 1)
    again = _ingest(body, sent + 15)  # Meta's retry keeps the original timestamp
    assert (first.appended, again.appended, again.duplicates) == (1, 0, 1)
    assert again.quarantined == []
    assert _reasons(env["DATABASE_URL"]) == []
    assert len(stream_entries(redis_client)) == 1


def test_a_late_new_event_is_quarantined_by_default(env, redis_client):
    sent = int(time.time()) - 60
    outcome = _ingest(body_of(fixture("text", now=sent)), sent + 60)
    assert outcome.appended == 0
    assert _reasons(env["DATABASE_URL"]) == ["stale_timestamp"]
    assert stream_entries(redis_client) == []


def test_with_deliver_a_late_new_event_goes_to_the_stream_marked_late(
    env, redis_client, deliver_late
):
    sent = int(time.time()) - 3600
    outcome = _ingest(body_of(fixture("text", now=sent)), sent + 3600.25)
    assert outcome.appended == 1
    (entry,) = stream_entries(redis_client)
    assert entry["envelope"]["late"] is True
    assert entry["envelope"]["late_by_s"] == 3600.2
    assert _reasons(env["DATABASE_URL"]) == []
    # And its late duplicate is still only a duplicate.
    again = _ingest(body_of(fixture("text", now=sent)), sent + 7200)
    assert (again.appended, again.duplicates, again.quarantined) == (0, 1, [])


def test_with_deliver_an_event_older_than_metas_7_days_is_still_quarantined(
    env, redis_client, deliver_late
):
    sent = int(time.time()) - 8 * DAY
    outcome = _ingest(body_of(fixture("text", now=sent)), time.time())
    assert outcome.appended == 0
    assert _reasons(env["DATABASE_URL"]) == ["stale_timestamp"]
    assert stream_entries(redis_client) == []


def test_fresh_events_carry_no_late_mark(env, redis_client, deliver_late):
    now = int(time.time())
    _ingest(body_of(fixture("text", now=now)), now + 1)
    (entry,) = stream_entries(redis_client)
    assert "late" not in entry["envelope"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_policy_names_its_choices_when_misspelt(env):
    with pytest.raises(ConfigError, match="WEBHOOK_STALE_POLICY='drop': expected one of"):
        Settings.from_env({**env, "WEBHOOK_STALE_POLICY": "drop"})
