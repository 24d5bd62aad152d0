"""A worker SIGKILLed mid-stream (as the OOM killer does) loses nothing and duplicates nothing.

The worker is a real `celery worker` subprocess. No clock is mocked: recovery below is the
real mechanism (a restarted worker re-drives the journals at once), timed with a wall clock.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.ingest.receive import ingest_journal
from alfred.models import Message, SendAttempt
from alfred.models.messages import OUTBOUND
from alfred.outbound.audit_batch import audit_journal
from alfred.outbound.pending import outbound_journal
from tests.conftest import APP_SECRET, _simulator_config
from tests.helpers import body_of, fixture, signed_headers
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import open_window
from tests.processes import WORKER_CONCURRENCY, kill, start_worker

RECOVERY_LIMIT_S = 60.0


@pytest.fixture
def workers():
    started: list[subprocess.Popen] = []

    def spawn(extra_env: dict | None = None, **options) -> subprocess.Popen:
        worker = start_worker(extra_env, **options)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        if worker.poll() is None:
            kill(worker)


def unique_delivery(i: int) -> bytes:
    payload = fixture("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = f"wamid.kill-test-{i:05d}"
    message["text"]["body"] = f"message {i}"
    return body_of(payload)


def test_ingest_survives_a_sigkill_mid_stream(web, workers, redis_client):
    total = 300
    for i in range(total):
        body = unique_delivery(i)
        assert (
            web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET)).status_code
            == 200
        )
    # Started once the deliveries wait: started first, on a loaded machine it drained them as
    # fast as they were posted, and the kill found nothing in flight.
    worker = workers()
    wait_for(lambda: redis_client.xlen("alfred-ingest") >= 20, timeout=60, interval=0.01)
    kill(worker)
    in_flight = ingest_journal(redis_client).size()
    assert in_flight > 0, "the kill must land while work is pending"

    time.sleep(1)  # what a supervisor's restart takes, roughly
    restarted = time.monotonic()
    workers()
    try:
        wait_for(lambda: ingest_journal(redis_client).size() == 0, timeout=RECOVERY_LIMIT_S)
    except AssertionError:
        journal = ingest_journal(redis_client)
        raise AssertionError(
            f"not drained: {journal.size()} journaled, due "
            f"{redis_client.zrange(journal.due_key, 0, 2, withscores=True)} at {time.time()}; "
            f"ready list {redis_client.llen('alfred:ingest:ready')}"
        ) from None
    recovery = time.monotonic() - restarted
    ids = Counter(e["envelope"]["id"] for e in stream_entries(redis_client))
    assert len(ids) == total, f"lost {total - len(ids)}"
    assert max(ids.values()) == 1, "duplicated"
    print(f"\ningest: {in_flight} in flight at the kill; drained {recovery:.1f} s after restart")


def test_sends_survive_a_sigkill_mid_stream(env, web_server, workers, redis_client):
    from alfred.simulator.testing import running_simulator
    from alfred.tasks import send_message

    total = 200
    users = [f"+4477009{i:05d}" for i in range(total)]
    open_window(env["DATABASE_URL"], "home", *[u.lstrip("+") for u in users])
    # Statuses come back to our web server, as Meta's do: they are what tells a restarted
    # worker that a send it cannot account for was in fact accepted.
    config = _simulator_config(f"{web_server}/webhook", status_delay_s=0.01, enforce_window=False)
    with running_simulator(config) as simulator:
        worker_env = {"GRAPH_API_URL": simulator.url}
        worker = workers(worker_env)
        for i, user in enumerate(users):
            send_message.delay(
                {
                    "tenant_id": "home",
                    "to": user,
                    "type": "text",
                    "text": {"body": f"answer {i}"},
                    "idempotency_key": f"k{i}",
                }
            )

        def accepted() -> int:
            return simulator.state.stats()["sends"]["accepted"]

        wait_for(lambda: accepted() >= 30, timeout=60, interval=0.01)
        kill(worker)
        at_kill = accepted()
        assert at_kill < total, "the kill must land mid-stream"
        assert outbound_journal(redis_client).size() > 0

        time.sleep(1)
        restarted = time.monotonic()
        workers(worker_env)
        wait_for(
            lambda: outbound_journal(redis_client).size() == 0,
            timeout=RECOVERY_LIMIT_S,
            interval=0.2,
        )
        recovery = time.monotonic() - restarted
        time.sleep(0.5)
        stats = simulator.state.stats()
        keys = Counter(m["key"] for m in simulator.state.messages(limit=10_000))
    assert stats["duplicates"]["count"] == 0, stats["duplicates"]
    # Every status webhook was ingested too: none is left waiting for a re-drive.
    wait_for(lambda: ingest_journal(redis_client).size() == 0, timeout=15)
    assert len(keys) == total and max(keys.values()) == 1
    # The audit trail is whole too: a batch the kill interrupted was re-driven, written once.
    wait_for(lambda: audit_journal(redis_client).size() == 0, timeout=RECOVERY_LIMIT_S)
    with session_scope(env["DATABASE_URL"]) as session:
        rows = session.execute(
            select(Message.idempotency_key, Message.wamid).where(Message.direction == OUTBOUND)
        ).all()
        calls = session.scalars(
            select(SendAttempt.idempotency_key).where(SendAttempt.http_status == 200)
        ).all()
    assert len(rows) == total and all(wamid for _, wamid in rows)
    assert len(calls) == len(set(calls)), "an accepted call recorded twice"
    # Only a call cut off mid-flight by the kill is known from its status webhook alone.
    assert len(calls) >= total - WORKER_CONCURRENCY
    print(
        f"\nsends: {at_kill} accepted at the kill; all {total} sent once, "
        f"{recovery:.1f} s after restart"
    )
