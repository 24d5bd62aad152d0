"""Accepted calls reach the database in batches, once each, whatever crashes or arrives first."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from alfred.db import session_scope
from alfred.ingest.service import ingest_body
from alfred.models import Message, SendAttempt
from alfred.outbound.audit_batch import READY_KEY, audit_journal, write_pending
from tests.helpers import body_of, fixture
from tests.integration.test_ingest_pipeline import wait_for
from tests.integration.test_send_pipeline import open_window, sender, stamped, text

__all__ = ["sender"]  # the fixture, shared with the send pipeline's tests


def counts(database_url: str) -> tuple[int, int]:
    with session_scope(database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Message)),
            session.scalar(select(func.count()).select_from(SendAttempt)),
        )


def send_many(sender, count: int) -> list[str]:
    keys = [f"batch-{i}" for i in range(count)]
    for i, key in enumerate(keys):
        # Distinct users: the pair pacing would hold a sixth message to one user.
        to = f"+4477009{i:05d}"
        outcome = sender.send(stamped(text(to=to, idempotency_key=key)))
        assert outcome.status == "sent"
    return keys


def test_accepted_calls_wait_in_redis_and_are_written_in_one_batch(
    sender, simulator, settings, env, redis_client
):
    for i in range(12):
        open_window(env["DATABASE_URL"], "home", f"4477009{i:05d}")
    keys = send_many(sender, 12)
    assert counts(env["DATABASE_URL"]) == (0, 0)  # nothing written on the send path
    assert redis_client.llen(READY_KEY) == 12
    assert write_pending(settings=settings, client=redis_client) == 12
    assert counts(env["DATABASE_URL"]) == (12, 12)
    assert audit_journal(redis_client).size() == 0
    with session_scope(env["DATABASE_URL"]) as session:
        rows = session.scalars(select(Message).where(Message.idempotency_key.in_(keys))).all()
        assert {(r.status, r.attempts, r.tenant_id) for r in rows} == {("accepted", 1, "home")}
        sent = {m["key"]: m["wamid"] for m in simulator.state.messages()}
        assert {r.idempotency_key: r.wamid for r in rows} == sent
        (call,) = session.scalars(
            select(SendAttempt).where(SendAttempt.idempotency_key == "batch-3")
        )
        assert (call.http_status, call.attempt, call.wamid) == (200, 1, sent["batch-3"])
        assert call.payload["text"]["body"] == "Hello from Alfred" and call.duration_ms > 0


def test_a_batch_written_twice_counts_nothing_twice(sender, simulator, settings, env, redis_client):
    for i in range(3):
        open_window(env["DATABASE_URL"], "home", f"4477009{i:05d}")
    send_many(sender, 3)
    journal = audit_journal(redis_client)
    saved = {k: v for k, v in redis_client.hgetall(journal.records_key).items()}
    write_pending(settings=settings, client=redis_client)
    # A writer that committed, then died before forgetting the batch: the sweeper re-drives it.
    for call_id, record in saved.items():
        journal.add(call_id.decode(), record, due_in=0, also_push_to=READY_KEY)
    assert write_pending(settings=settings, client=redis_client) == 3
    assert counts(env["DATABASE_URL"]) == (3, 3)
    with session_scope(env["DATABASE_URL"]) as session:
        assert set(session.scalars(select(Message.attempts))) == {1}


def test_statuses_that_arrive_before_the_batch_still_move_the_row(
    sender, simulator, settings, env, redis_client
):
    open_window(env["DATABASE_URL"], "home", "447700900123")
    (wamid,) = sender.send(stamped(text(idempotency_key="quick"))).wamids
    delivered = fixture("status_delivered")
    delivered["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = wamid
    ingest_body(body_of(delivered), received_at=time.time(), settings=settings, client=redis_client)
    write_pending(settings=settings, client=redis_client)
    with session_scope(env["DATABASE_URL"]) as session:
        row = session.scalar(select(Message).where(Message.idempotency_key == "quick"))
        assert (row.status, row.wamid) == ("delivered", wamid)


def test_a_lost_batch_task_is_re_driven_by_the_sweeper(
    simulator, celery_worker, settings, env, redis_client
):
    from alfred.journals.sweeper import sweep_all
    from alfred.outbound.tasks import sender as build

    open_window(env["DATABASE_URL"], "home", "447700900123")
    build.cache_clear()
    try:
        quiet = build()
        quiet.publish_audit = lambda: None  # the record_sends task is lost
        assert quiet.send(stamped(text(idempotency_key="orphan"))).status == "sent"
    finally:
        build.cache_clear()
    redis_client.delete(READY_KEY)  # and so is the ready list's entry
    assert audit_journal(redis_client).size() == 1
    sweep_all(now=time.time() + 3600)
    wait_for(lambda: audit_journal(redis_client).size() == 0)
    assert counts(env["DATABASE_URL"]) == (1, 1)


def test_the_worker_writes_the_batch_without_being_asked(
    simulator, celery_worker, env, redis_client
):
    from alfred.tasks import send_message

    open_window(env["DATABASE_URL"], "home", "447700900123")
    for i in range(5):
        send_message.delay(text(idempotency_key=f"by-worker-{i}", body=f"reply {i}"))
    wait_for(lambda: counts(env["DATABASE_URL"]) == (5, 5))
    assert audit_journal(redis_client).size() == 0
    assert redis_client.llen(READY_KEY) == 0


def test_a_backlog_of_stalled_records_is_re_driven_by_one_task(env, settings, redis_client):
    from alfred.celery_app import celery
    from alfred.journals.sweeper import sweep_all

    celery.conf.broker_url = env["REDIS_URL"]
    journal = audit_journal(redis_client)
    for i in range(50):  # records whose task was lost, say while the database was down
        journal.add(f"call-{i}", "{}", due_in=0)
    sweep_all(now=time.time() + 3600)
    assert redis_client.llen(READY_KEY) == 50  # every record back on the ready list
    assert redis_client.llen("alfred") == 1  # and one task to write them, not fifty


def test_a_broken_record_holds_back_no_other_and_stays_journaled(
    sender, simulator, settings, env, redis_client, caplog
):
    for i in range(3):
        open_window(env["DATABASE_URL"], "home", f"4477009{i:05d}")
    send_many(sender, 3)
    journal = audit_journal(redis_client)
    journal.add("broken", "not json", due_in=0, also_push_to=READY_KEY)
    assert write_pending(settings=settings, client=redis_client) == 3
    assert counts(env["DATABASE_URL"]) == (3, 3)
    assert journal.get("broken") == b"not json"  # kept, for the sweeper and for whoever fixes it
    assert any(r.msg == "audit.record_failed" and r.call_id == "broken" for r in caplog.records)
