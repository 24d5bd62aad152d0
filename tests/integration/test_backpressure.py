"""Back-pressure: past the backlog caps new work is refused with a reason, nothing is lost.

Real Redis and both databases: the webhook answers 503 `backlog_full` once WEBHOOK_MAX_BACKLOG
deliveries wait (and stores nothing of the refused one); send_message refuses a NEW message
with BacklogFull once OUTBOUND_MAX_BACKLOG wait, while a retry of one already journaled
always goes; the outbox bridge leaves what it could not enqueue pending and takes it again.
"""

from __future__ import annotations

import json
import uuid

import pytest

from alfred.ingest.receive import ingest_journal
from alfred.journals.journal import BacklogFull
from alfred.outbound.pending import outbound_journal
from alfred.outbox.bridge import OutboxBridge
from alfred.streams import INGEST_STREAM
from tests.conftest import APP_SECRET, _reset_caches
from tests.helpers import body_of, fixture, signed_headers


def _delivery(i: int) -> bytes:
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.full.{i}"
    return body_of(payload)


def test_the_webhook_answers_503_backlog_full_past_the_cap_and_stores_nothing(
    web, redis_client, monkeypatch
):
    monkeypatch.setenv("WEBHOOK_MAX_BACKLOG", "3")
    _reset_caches()
    journal = ingest_journal(redis_client)
    answers = []
    for i in range(5):  # no worker runs: the first three wait in the journal
        body = _delivery(i)
        answers.append(web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET)))
    assert [a.status_code for a in answers] == [200, 200, 200, 503, 503]
    refused = answers[-1]
    assert refused.json["error"] == "backlog_full"
    assert "3 entries" in refused.json["detail"]
    assert refused.headers["Retry-After"] == "30"
    assert journal.size() == 3  # the refused ones left no trace: Meta keeps and retries them
    assert redis_client.xlen(INGEST_STREAM) == 0


def test_send_message_refuses_a_new_message_past_the_cap_but_never_a_retry(
    env, redis_client, monkeypatch
):
    from alfred.tasks import send_message

    monkeypatch.setenv("OUTBOUND_MAX_BACKLOG", "2")
    _reset_caches()

    def message(key: str) -> dict:
        return {"tenant_id": "home", "to": "+14155551234", "type": "text",
                "text": {"body": "hi"}, "idempotency_key": key}  # fmt: skip

    send_message.delay(message("a"))
    send_message.delay(message("b"))
    with pytest.raises(BacklogFull, match="outbound backlog holds 2 entries"):
        send_message.delay(message("c"))
    assert outbound_journal(redis_client).size() == 2
    # The same message again (a retry, a re-drive, the bridge's second try) is journaled
    # already: it goes, and the journal does not grow.
    send_message.apply_async([message("a")], countdown=5)
    assert outbound_journal(redis_client).size() == 2


def test_the_bridge_keeps_what_the_cap_refused_pending_and_enqueues_it_later(redis_client):
    stream, group = f"outbox-test-{uuid.uuid4().hex}", "alfred-outbound"
    for i in range(5):
        redis_client.xadd(stream, {"payload": json.dumps({"tenant_id": "home", "n": i})})
    room = [2]
    enqueued: list[int] = []

    def enqueue(message: dict) -> None:
        if room[0] == 0:
            raise BacklogFull("outbound", 2)
        room[0] -= 1
        enqueued.append(message["n"])

    bridge = OutboxBridge(
        redis_client, enqueue=enqueue, reject=pytest.fail, consumer="c1", stream=stream, group=group
    )
    try:
        bridge.run_once()
        assert enqueued == [0, 1]
        assert bridge.enqueue_failures == 1  # run_forever backs off
        pending = redis_client.xpending(stream, group)["pending"]
        assert pending == 3  # read, refused, kept: never acked, never lost
        room[0] = 10  # the senders caught up
        for _ in range(3):
            bridge.run_once()
        assert enqueued == [0, 1, 2, 3, 4]
        assert redis_client.xpending(stream, group)["pending"] == 0
    finally:
        redis_client.delete(stream)
