"""A send that crashes every time (a bug, not Meta) is dead-lettered after 5 crashes, named."""

from __future__ import annotations

import time

from alfred.outbound import service
from alfred.outbound.pending import outbound_journal
from alfred.outbound.poison import MAX_CRASHES, crash_key
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import USER, open_window, row, text


def test_a_poison_send_is_dead_lettered_after_five_crashes_not_redriven_for_ever(
    simulator, celery_worker, env, redis_client, monkeypatch, caplog
):
    from alfred.journals.sweeper import sweep_all
    from alfred.tasks import send_message

    def crash(self, *args, **kwargs):
        raise ZeroDivisionError("boom in a parser")

    monkeypatch.setattr(service.Sender, "call", crash)
    open_window(env["DATABASE_URL"], "home", USER.lstrip("+"))
    message = text(idempotency_key="poison-1")
    send_message.delay(message)
    counter = crash_key({**message, "tenant_id": "home"})
    wait_for(lambda: redis_client.get(counter) == b"1")
    redrives = 0
    for hour in range(1, 3 * MAX_CRASHES):
        if outbound_journal(redis_client).size() == 0:
            break
        crashes = int(redis_client.get(counter) or 0)
        sweep_all(now=time.time() + 3600 * hour)  # as the sweeper does when the entry falls due
        redrives += 1
        wait_for(
            lambda c=crashes: (
                int(redis_client.get(counter) or 0) > c
                or outbound_journal(redis_client).size() == 0
            )
        )
    assert redrives <= MAX_CRASHES
    counts = [r.crashes for r in caplog.records if r.getMessage() == "send.crashed"]
    # Counted once per run, dead-lettered at the fifth. A sweep may re-drive a message that a run
    # still holds (by design, docs/reliability.md): that copy can crash once more in flight, and
    # finds the message dead-lettered (one send_failed, asserted below).
    assert counts[:MAX_CRASHES] == list(range(1, MAX_CRASHES + 1))
    assert counts[MAX_CRASHES:] in ([], [MAX_CRASHES + 1])
    wait_for(lambda: outbound_journal(redis_client).size() == 0)
    record = row(env["DATABASE_URL"], "poison-1")
    assert (record.status, record.error_reason) == ("dead_lettered", "send_crashed")
    assert "ZeroDivisionError: boom in a parser" in record.error_detail
    (event,) = [e for e in stream_entries(redis_client) if e["event"] == "send_failed"]
    assert event["envelope"]["id"] == "poison-1"
    assert simulator.state.messages() == []
    assert redis_client.get(counter) is None  # a dlq replay counts afresh
    # Nothing left to re-drive: a later sweep publishes nothing.
    sweep_all(now=time.time() + 3600 * 100)
    assert outbound_journal(redis_client).size() == 0
