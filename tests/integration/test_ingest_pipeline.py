"""Signed webhook → real Celery worker → «alfred-ingest», exactly once, on both databases."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from alfred import runtime
from alfred.db import session_scope
from alfred.ingest.receive import ingest_journal
from alfred.ingest.replay import replay
from alfred.ingest.service import ingest_body
from alfred.models import CustomerWindow, Message, MessageStatus, QuarantinedEvent
from alfred.models.messages import OUTBOUND
from alfred.streams import INGEST_STREAM
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers


def stream_entries(client) -> list[dict]:
    """Read «alfred-ingest» whole, decoding each entry's fields and envelope."""
    out = []
    for _id, fields in client.xrange(INGEST_STREAM):
        entry = {k.decode(): v.decode() for k, v in fields.items()}
        entry["envelope"] = json.loads(entry["payload"])
        out.append(entry)
    return out


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll until predicate() is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def accepted_message(wamid: str, key: str, **values) -> Message:
    """Return the row of an outbound text Meta accepted as `wamid`, for statuses to advance."""
    return Message(
        tenant_id="home",
        direction=OUTBOUND,
        wamid=wamid,
        type="text",
        status="accepted",
        idempotency_key=key,
        **values,
    )


def post(web, payload: dict, **kwargs):
    body = body_of(payload, **kwargs)
    return web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET))


def test_a_signed_post_reaches_the_stream_once_as_the_envelope(
    web, celery_worker, redis_client, env
):
    assert post(web, fixture("text")).status_code == 200
    wait_for(lambda: ingest_journal(redis_client).size() == 0)
    (entry,) = stream_entries(redis_client)
    assert entry["tenant_id"] == "home"
    assert entry["event"] == "message"
    envelope = entry["envelope"]
    assert envelope["schema"] == "alfred.inbound.v1"
    assert envelope["type"] == "text"
    assert envelope["from"] == "447700900123"
    assert isinstance(envelope["text"], str) and envelope["text"]
    assert envelope["raw"]["id"] == envelope["id"]
    with session_scope(env["DATABASE_URL"]) as session:
        row = session.scalar(select(Message))
        assert (row.tenant_id, row.direction, row.wamid) == ("home", "inbound", envelope["id"])
        windows = {w.user_key for w in session.scalars(select(CustomerWindow))}
        assert windows == {"447700900123", "GB.28461930571846203957"}


def test_the_same_delivery_twice_at_the_same_moment_appends_once(web, celery_worker, redis_client):
    from alfred import create_app

    payload = fixture("batch_after_outage")
    body = body_of(payload)
    barrier = threading.Barrier(8)
    codes = []

    def deliver():
        client = create_app({"TESTING": True}).test_client()
        barrier.wait()
        codes.append(
            client.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET)).status_code
        )

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    wait_for(lambda: ingest_journal(redis_client).size() == 0)
    entries = stream_entries(redis_client)
    keys = [
        (e["tenant_id"], e["event"], e["envelope"]["id"], e["envelope"].get("status"))
        for e in entries
    ]
    # 3 messages, 4 statuses (one failed) and the failed one's send_failed, each once.
    assert len(keys) == len(set(keys)) == 8
    assert sorted(e["event"] for e in entries).count("send_failed") == 1
    assert {e["tenant_id"] for e in entries} == {"home", "biz"}


def test_a_redelivery_days_later_is_still_a_duplicate(settings, redis_client):
    now = int(time.time())
    body = body_of(fixture("text", now=now))
    first = ingest_body(body, received_at=now, settings=settings, client=redis_client)
    # Meta retries for up to 7 days; the replay skips the skew check as an operator would.
    again = ingest_body(
        body, received_at=now + 6 * 86400, settings=settings, client=redis_client, check_skew=False
    )
    assert (first.appended, again.appended, again.duplicates) == (1, 0, 1)
    key = redis_client.keys("alfred:seen:*")[0]
    assert redis_client.ttl(key) > 7 * 86400


def test_every_event_of_a_batched_delivery_counts(settings, redis_client):
    outcome = ingest_body(
        body_of(fixture("batch_after_outage")),
        received_at=time.time(),
        settings=settings,
        client=redis_client,
    )
    assert outcome.appended == 8  # 3 messages, 4 statuses, 1 send_failed for the failed one
    assert [e["event"] for e in stream_entries(redis_client)].count("status") == 4


def test_a_status_never_moves_backwards(settings, redis_client, env):
    now = int(time.time())
    read = fixture("status_read_bsuid", now=now)
    wamid = read["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
    with session_scope(env["DATABASE_URL"]) as session:
        session.add(accepted_message(wamid, "k-1"))
    delivered = json.loads(json.dumps(read))
    delivered["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "delivered"
    for payload in (read, delivered):  # out of order: read first, then a late delivered
        ingest_body(body_of(payload), received_at=now, settings=settings, client=redis_client)
    with session_scope(env["DATABASE_URL"]) as session:
        assert session.scalar(select(Message.status).where(Message.wamid == wamid)) == "read"
        assert sorted(session.scalars(select(MessageStatus.status))) == ["delivered", "read"]


def test_a_failed_status_updates_the_record_and_yields_send_failed(settings, redis_client, env):
    now = int(time.time())
    payload = fixture("status_failed", now=now)
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    with session_scope(env["DATABASE_URL"]) as session:
        session.add(
            accepted_message(
                status["id"], "order-42", payload={"tenant_id": "home", "to": "+447700900123"}
            )
        )
    status.pop("biz_opaque_callback_data", None)
    ingest_body(body_of(payload), received_at=now, settings=settings, client=redis_client)
    events = {e["event"]: e["envelope"] for e in stream_entries(redis_client)}
    assert events["send_failed"]["id"] == "order-42"
    assert events["send_failed"]["to"] == "+447700900123"
    assert events["send_failed"]["errors"][0]["code"] == status["errors"][0]["code"]
    with session_scope(env["DATABASE_URL"]) as session:
        row = session.scalar(select(Message).where(Message.wamid == status["id"]))
        assert row.status == "failed"
        assert row.error_code == status["errors"][0]["code"]


def test_stale_events_are_quarantined_then_replayed(settings, redis_client, env):
    now = float(int(time.time()))  # a whole second: the skew is 60.0 s, never 60.96 → "61.0"
    body = body_of(fixture("text", now=int(now) - 60))
    outcome = ingest_body(body, received_at=now, settings=settings, client=redis_client)
    assert outcome.appended == 0 and len(outcome.quarantined) == 1
    assert stream_entries(redis_client) == []
    with session_scope(env["DATABASE_URL"]) as session:
        held = session.scalar(select(QuarantinedEvent))
        assert held.reason == "stale_timestamp" and "60" in held.detail
        held_id = held.id
    assert replay(held_id, settings=settings, client=redis_client) == "appended"
    assert [e["event"] for e in stream_entries(redis_client)] == ["message"]
    assert replay(held_id, settings=settings, client=redis_client).startswith("already")


def test_a_slow_worker_does_not_turn_fresh_events_stale(settings, redis_client):
    # Skew is measured against the web process's arrival time, not the worker's clock.
    received_at = time.time() - 120
    body = body_of(fixture("text", now=int(received_at)))
    outcome = ingest_body(body, received_at=received_at, settings=settings, client=redis_client)
    assert outcome.appended == 1


def test_unknown_numbers_never_reach_the_stream_until_configured_and_replayed(
    settings, redis_client, env, monkeypatch
):
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    outcome = ingest_body(
        body_of(payload), received_at=time.time(), settings=settings, client=redis_client
    )
    assert outcome.appended == 0
    assert stream_entries(redis_client) == []
    with session_scope(env["DATABASE_URL"]) as session:
        held = session.scalar(select(QuarantinedEvent))
        assert held.reason == "unknown_phone_number"
        held_id = held.id
    assert replay(held_id, settings=settings, client=redis_client).startswith("still")
    tenants = json.loads(env["ALFRED_TENANTS"])
    tenants["home"]["phone_number_id"] = "999"
    monkeypatch.setenv("ALFRED_TENANTS", json.dumps(tenants))
    runtime.reset()
    assert replay(held_id, settings=runtime.settings(), client=redis_client).startswith("replayed")
    assert [e["tenant_id"] for e in stream_entries(redis_client)] == ["home"]


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page", "entry": []},
        [1, 2, 3],
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {}}]}],
        },
    ],
    ids=["not-whatsapp", "a-list", "no-metadata"],
)
def test_valid_json_that_is_not_a_whatsapp_payload_is_quarantined(
    settings, redis_client, env, payload
):
    outcome = ingest_body(
        json.dumps(payload), received_at=time.time(), settings=settings, client=redis_client
    )
    assert outcome.appended == 0 and outcome.quarantined
    with session_scope(env["DATABASE_URL"]) as session:
        assert session.scalar(select(QuarantinedEvent.reason)) in {
            "not_whatsapp_payload",
            "invalid_payload",
        }


def test_an_unknown_message_type_still_reaches_the_orchestrator(settings, redis_client):
    payload = fixture("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "hologram"
    message["hologram"] = {"frames": 3}
    ingest_body(body_of(payload), received_at=time.time(), settings=settings, client=redis_client)
    (entry,) = stream_entries(redis_client)
    assert entry["envelope"]["type"] == "hologram"
    assert entry["envelope"]["raw"]["hologram"] == {"frames": 3}


def test_unicode_everywhere_survives_to_the_stream(settings, redis_client):
    ingest_body(
        body_of(fixture("non_ascii")),
        received_at=time.time(),
        settings=settings,
        client=redis_client,
    )
    texts = [e["envelope"].get("text") or "" for e in stream_entries(redis_client)]
    assert any(any(ord(ch) > 0xFFFF for ch in t) for t in texts)  # an emoji made it through


def test_an_absurd_error_code_does_not_break_the_batch(settings, redis_client, env):
    payload = fixture("status_failed")
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] = 10**20
    outcome = ingest_body(
        body_of(payload), received_at=time.time(), settings=settings, client=redis_client
    )
    assert outcome.appended == 2  # the failed status and its send_failed


def test_deliveries_coalesce_onto_the_task_under_way_until_it_drains(
    web, settings, redis_client, env
):
    from alfred.ingest.receive import READY_KEY, SCHEDULED_KEY
    from alfred.ingest.service import drain_ready

    def queued_tasks() -> int:
        return redis_client.llen("ingest")

    for i in range(5):
        payload = fixture("text")
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.coal{i}"
        assert post(web, payload).status_code == 200
    # One task for five deliveries: the first claimed the right to publish, the rest found
    # a task under way; all five are journaled and listed as ready.
    assert queued_tasks() == 1
    assert redis_client.llen(READY_KEY) == 5
    assert ingest_journal(redis_client).size() == 5
    outcome, more = drain_ready(settings=settings, client=redis_client)
    assert (outcome.deliveries, outcome.appended, more) == (5, 5, False)
    assert not redis_client.exists(SCHEDULED_KEY)  # let go on finding the list empty
    # The next delivery finds no task under way and publishes its own.
    payload = fixture("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.coal-next"
    assert post(web, payload).status_code == 200
    assert queued_tasks() == 2


def test_a_failed_publish_lets_go_of_the_claim(web, redis_client, env, monkeypatch):
    from celery import Celery

    from alfred.ingest.receive import SCHEDULED_KEY

    def broker_down(*_args, **_kwargs):
        raise ConnectionError("broker down")

    # The web publishes the task by name (receive.publish_ingest): the broker refuses that.
    monkeypatch.setattr(Celery, "send_task", broker_down)
    answer = post(web, fixture("text"))
    assert answer.status_code == 503
    # Journaled all the same (the sweeper re-drives it), and the claim is free again, so the
    # next delivery publishes a task rather than wait for the claim to expire.
    assert ingest_journal(redis_client).size() == 1
    assert not redis_client.exists(SCHEDULED_KEY)


def test_a_worker_takes_the_waiting_deliveries_as_one_batch(web, settings, redis_client, env):
    from alfred.ingest.receive import READY_KEY
    from alfred.ingest.service import process_delivery

    ids = []
    for i in range(5):
        payload = fixture("text")
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.batch{i}"
        body = body_of(payload)
        ids.append(
            web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET)).get_json()[
                "delivery_id"
            ]
        )
    assert redis_client.llen(READY_KEY) == 5
    outcome = process_delivery(ids[0], settings=settings, client=redis_client)
    assert (outcome.deliveries, outcome.appended) == (5, 5)
    assert ingest_journal(redis_client).size() == 0
    # The tasks of the other four find nothing left to do.
    assert process_delivery(ids[1], settings=settings, client=redis_client).already_done


def test_many_statuses_in_one_delivery_all_advance_their_records(settings, redis_client, env):
    now = int(time.time())
    payload = fixture("status_delivered", now=now)
    value = payload["entry"][0]["changes"][0]["value"]
    template = value["statuses"][0]
    value["statuses"] = []
    with session_scope(env["DATABASE_URL"]) as session:
        for i in range(4):
            wamid = f"wamid.many{i}"
            session.add(accepted_message(wamid, f"many-{i}"))
            for status in ("sent", "delivered"):
                value["statuses"].append({**template, "id": wamid, "status": status})
    outcome = ingest_body(body_of(payload), received_at=now, settings=settings, client=redis_client)
    assert outcome.appended == 8
    with session_scope(env["DATABASE_URL"]) as session:
        assert set(session.scalars(select(Message.status))) == {"delivered"}
