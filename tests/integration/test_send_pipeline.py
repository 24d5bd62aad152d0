"""send_message → the simulator over real HTTP: sent once, retried or refused as Meta says."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.models import CustomerWindow, Message, SendAttempt
from alfred.outbound import service
from alfred.outbound.pending import outbound_journal
from alfred.simulator.faults import FaultConfig
from alfred.streams import INGEST_STREAM
from tests.helpers import body_of, fixture, task_arguments
from tests.integration.test_ingest_pipeline import stream_entries, wait_for

USER = "+447700900123"
BSUID = "GB.28461930571846203957"


def open_window(database_url: str, tenant_id: str, *keys: str, age: timedelta = timedelta(0)):
    """Record that the user wrote to the tenant `age` ago, under each of its names."""
    at = datetime.now(UTC) - age
    with session_scope(database_url) as session:
        for key in keys:
            session.merge(CustomerWindow(tenant_id=tenant_id, user_key=key, last_inbound_at=at))


def text(tenant: str = "home", to: str | None = USER, body: str = "Hello from Alfred", **extra):
    message = {"tenant_id": tenant, "type": "text", "text": {"body": body}, **extra}
    if to:
        message["to"] = to
    return message


@pytest.fixture
def sender(simulator, settings):
    """Give this process's real Sender, pointed at the simulator."""
    from alfred.outbound.tasks import sender as build

    return build()


def stamped(message: dict) -> dict:
    return service.stamp(message)


def retry_of(message: dict, outcome: service.SendOutcome) -> dict:
    """Return the message as send_message re-publishes it after a failed call."""
    if outcome.attempts_made is None:
        return message
    return {**message, "attempts_made": outcome.attempts_made}


def flush_audit() -> int:
    """Write the accepted calls waiting in Redis, as the record_sends task does."""
    from alfred import runtime
    from alfred.outbound.audit_batch import write_pending

    return write_pending(settings=runtime.settings(), client=runtime.redis_client())


def row(database_url: str, key: str) -> Message:
    flush_audit()
    with session_scope(database_url) as session:
        return session.scalar(select(Message).where(Message.idempotency_key == key))


def attempts(database_url: str, key: str) -> list[SendAttempt]:
    flush_audit()
    with session_scope(database_url) as session:
        return list(
            session.scalars(
                select(SendAttempt)
                .where(SendAttempt.idempotency_key == key)
                .order_by(SendAttempt.id)
            )
        )


def test_a_text_is_sent_once_through_the_worker_and_audited(
    simulator, celery_worker, env, redis_client
):
    from alfred.tasks import send_message

    open_window(env["DATABASE_URL"], "home", "447700900123")
    send_message.delay(text(idempotency_key="reply-1"))
    wait_for(lambda: simulator.state.messages())
    wait_for(lambda: outbound_journal(redis_client).size() == 0)
    (sent,) = simulator.state.messages()
    assert sent["tenant"] == "home" and sent["key"] == "reply-1"
    assert sent["body"]["text"]["body"] == "Hello from Alfred"
    record = row(env["DATABASE_URL"], "reply-1")
    assert (record.status, record.wamid, record.attempts) == ("accepted", sent["wamid"], 1)
    (attempt,) = attempts(env["DATABASE_URL"], "reply-1")
    assert (attempt.http_status, attempt.wamid, attempt.tenant_id) == (200, sent["wamid"], "home")
    assert "token" not in json.dumps(attempt.payload)


def test_each_tenant_sends_with_its_own_number_and_token(sender, simulator, env):
    open_window(env["DATABASE_URL"], "home", "447700900123")
    open_window(env["DATABASE_URL"], "biz", "447700900123")
    assert sender.send(stamped(text("home"))).status == "sent"
    assert sender.send(stamped(text("biz"))).status == "sent"
    by_tenant = {m["tenant"]: m["phone_number_id"] for m in simulator.state.messages()}
    assert by_tenant == {"home": "110000000000001", "biz": "110000000000002"}
    # The simulator answers 190 to a token used for another tenant's number: none happened.
    assert simulator.state.stats()["tenants"]["home"]["rejected"] == {}


def test_a_key_sent_once_is_never_sent_again(sender, simulator, env, redis_client):
    open_window(env["DATABASE_URL"], "home", "447700900123")
    message = stamped(text(idempotency_key="once"))
    outcomes = [sender.send(dict(message)).status for _ in range(3)]
    assert outcomes == ["sent", "duplicate", "duplicate"]
    assert len(simulator.state.messages()) == 1


def test_duplicate_tasks_and_redrives_through_the_worker_send_once(
    simulator, celery_worker, env, redis_client
):
    from alfred.journals.sweeper import sweep_all
    from alfred.tasks import send_message

    open_window(env["DATABASE_URL"], "home", "447700900123")
    message = text(idempotency_key="twice")
    for _ in range(4):
        send_message.delay(message)
    sweep_all(now=time.time() + 3600)  # the sweeper re-drives whatever is still journaled
    wait_for(lambda: outbound_journal(redis_client).size() == 0)
    time.sleep(0.5)
    assert [m["key"] for m in simulator.state.messages()] == ["twice"]
    assert simulator.state.stats()["duplicates"]["count"] == 0


def test_a_bsuid_recipient_finds_its_window_and_is_sent(sender, simulator, env):
    open_window(env["DATABASE_URL"], "home", BSUID)
    outcome = sender.send(stamped(text(to=None, recipient=BSUID)))
    assert outcome.status == "sent"
    assert simulator.state.messages()[0]["recipient"] == BSUID


def test_an_inbound_message_opens_the_window_in_redis_until_it_closes(
    sender, simulator, settings, env, redis_client
):
    from alfred.ingest.service import ingest_body
    from alfred.windows import WINDOW_S, window_key

    wrote_at = int(time.time()) - 3600
    ingest_body(
        body_of(fixture("text", now=wrote_at)),
        received_at=wrote_at,
        settings=settings,
        client=redis_client,
        check_skew=False,
    )
    for name in ("447700900123", BSUID):
        expires = redis_client.expiretime(window_key("home", name))
        assert abs(expires - (wrote_at + WINDOW_S)) <= 1
    # The sender trusts the Redis copy: with the database row gone it still sends.
    with session_scope(env["DATABASE_URL"]) as session:
        session.execute(CustomerWindow.__table__.delete())
    assert sender.send(stamped(text())).status == "sent"
    assert sender.send(stamped(text(to=None, recipient=BSUID))).status == "sent"


def test_an_older_message_arriving_late_never_shortens_the_window(redis_client):
    from alfred.windows import WINDOW_S, remember_open, window_key

    now = int(time.time())
    for wrote_at in (now - 60, now - 7200):  # the newer first, then a late older one
        pipe = redis_client.pipeline()
        remember_open(pipe, "home", "447700900123", wrote_at)
        pipe.execute()
    assert redis_client.expiretime(window_key("home", "447700900123")) == now - 60 + WINDOW_S


def test_a_window_found_only_in_the_database_is_copied_to_redis(
    sender, simulator, env, redis_client
):
    from alfred.windows import window_key

    open_window(env["DATABASE_URL"], "home", "447700900123", age=timedelta(hours=23))
    assert not redis_client.exists(window_key("home", "447700900123"))
    assert sender.send(stamped(text())).status == "sent"
    ttl = redis_client.ttl(window_key("home", "447700900123"))
    assert 3500 < ttl <= 3600  # it closes with the window, an hour from now


def test_a_decided_message_is_never_sent_even_once_its_window_opens(
    sender, simulator, env, redis_client
):
    message = stamped(text(idempotency_key="too-late"))
    assert sender.send(message).status == "failed"  # no window at all
    open_window(env["DATABASE_URL"], "home", "447700900123")
    outcome = sender.send(dict(message))  # the orchestrator's retry, or a duplicated task
    assert (outcome.status, outcome.reason) == ("failed", "already_final")
    assert simulator.state.messages() == []
    assert len(stream_entries(redis_client)) == 1  # send_failed, told once


def test_a_decision_interrupted_before_it_was_recorded_is_completed_not_sent(
    sender, simulator, env, redis_client
):
    from alfred.streams import final_key

    open_window(env["DATABASE_URL"], "home", "447700900123")
    message = stamped(text(idempotency_key="half-decided"))
    # A worker died right after writing its decision to Redis: no row, no event yet.
    decision = {"status": "dead_lettered", "reason": "meta_unavailable", "errors": []}
    redis_client.set(final_key("home", "half-decided"), json.dumps(decision))
    outbound_journal(redis_client).add("home:half-decided", json.dumps(message), due_in=0)
    outcome = sender.send(message)
    assert (outcome.status, outcome.reason) == ("dead_lettered", "already_final")
    assert simulator.state.messages() == []
    assert row(env["DATABASE_URL"], "half-decided").status == "dead_lettered"
    (event,) = stream_entries(redis_client)
    assert (event["event"], event["envelope"]["id"]) == ("send_failed", "half-decided")
    assert outbound_journal(redis_client).size() == 0


def test_an_acceptance_known_only_from_the_sent_mark_is_recorded(
    sender, simulator, env, redis_client
):
    from alfred.streams import sent_key

    open_window(env["DATABASE_URL"], "home", "447700900123")
    # Meta's status webhook marked the key sent; the sender that called died before its row.
    redis_client.set(sent_key("home", "died-after-200"), "wamid.ACCEPTED")
    outcome = sender.send(stamped(text(idempotency_key="died-after-200")))
    assert outcome.status == "duplicate"
    assert simulator.state.messages() == []
    record = row(env["DATABASE_URL"], "died-after-200")
    assert (record.status, record.wamid) == ("accepted", "wamid.ACCEPTED")


def test_outside_the_window_nothing_is_sent_and_the_orchestrator_is_told(
    sender, simulator, env, redis_client
):
    open_window(env["DATABASE_URL"], "home", "447700900123", age=timedelta(hours=25))
    message = stamped(text(idempotency_key="late"))
    outcome = sender.send(message)
    assert (outcome.status, outcome.reason) == ("failed", "outside_customer_service_window")
    assert simulator.state.messages() == []
    (event,) = stream_entries(redis_client)
    assert (event["event"], event["envelope"]["id"]) == ("send_failed", "late")
    assert "template" in event["envelope"]["errors"][0]["message"]
    # A template is what may open the conversation again.
    template = stamped(
        {
            "tenant_id": "home",
            "to": USER,
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        }
    )
    assert sender.send(template).status == "sent"


@pytest.mark.parametrize(
    "message, reason",
    [
        (
            {"tenant_id": "nobody", "to": USER, "type": "text", "text": {"body": "x"}},
            "unknown_tenant",
        ),
        ({"tenant_id": "home", "type": "text", "text": {"body": "x"}}, "missing_recipient"),
        (
            {"tenant_id": "home", "to": "not-a-number", "type": "text", "text": {"body": "x"}},
            "invalid_recipient",
        ),
        ({"tenant_id": "home", "to": USER, "type": "image", "image": {}}, "invalid_message"),
        (
            {"tenant_id": "home", "to": USER, "type": "template", "template": {"name": "x"}},
            "invalid_message",
        ),
        (
            {
                "tenant_id": "home",
                "to": USER,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "Pick"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": str(i), "title": f"Option {i}"}}
                            for i in range(4)
                        ]
                    },
                },
            },
            "invalid_message",
        ),
    ],
    ids=[
        "unknown-tenant",
        "no-recipient",
        "bad-recipient",
        "media-without-id-or-link",
        "template-without-language",
        "four-buttons",
    ],
)
def test_invalid_messages_make_no_http_call_and_leave_a_reason(
    sender, simulator, env, redis_client, message, reason
):
    outcome = sender.send(stamped(message))
    assert (outcome.status, outcome.reason) == ("invalid", reason)
    assert simulator.state.messages() == []
    assert simulator.state.stats()["tenants"]["home"]["rejected"] == {}
    (event,) = stream_entries(redis_client)
    assert event["event"] == "send_failed" and event["envelope"]["reason"] == reason
    with session_scope(env["DATABASE_URL"]) as session:
        record = session.scalar(select(Message))
        assert (record.status, record.error_reason) == ("invalid", reason)


@pytest.mark.parametrize(
    "code, outcome, reason, min_delay",
    [
        (130429, "retry", "rate_limited", 1.0),
        (131056, "retry", "pair_rate_limited", 6.0),
        (80007, "retry", None, 1.0),
        (131000, "retry", None, 0.5),
        (131016, "retry", None, 0.5),
        (368, "failed", "temporarily_blocked", None),
        (100, "failed", "invalid_parameter", None),
        (131008, "failed", "invalid_parameter", None),
    ],
)
def test_meta_errors_are_retried_or_not_as_meta_documents(
    sender, simulator, env, code, outcome, reason, min_delay
):
    open_window(env["DATABASE_URL"], "home", "447700900123")
    simulator.state.set_faults(FaultConfig(error_rates={code: 1.0}))
    message = stamped(text(idempotency_key=f"err-{code}"))
    result = sender.send(message)
    assert result.status == outcome
    if reason:
        assert result.reason == reason
    if min_delay is not None:
        assert result.retry_in >= min_delay
    (attempt,) = attempts(env["DATABASE_URL"], message["idempotency_key"])
    assert attempt.error_code == code
    simulator.state.set_faults(FaultConfig())
    again = sender.send(retry_of(message, result))
    assert again.status == ("sent" if outcome == "retry" else "failed")
    if outcome == "retry":
        record = row(env["DATABASE_URL"], message["idempotency_key"])
        assert (record.status, record.attempts, record.error_code) == ("accepted", 2, None)
        assert [a.attempt for a in attempts(env["DATABASE_URL"], record.idempotency_key)] == [1, 2]


def test_an_unknown_template_is_permanent(sender, simulator, env):
    message = stamped(
        {
            "tenant_id": "home",
            "to": USER,
            "type": "template",
            "template": {"name": "no_such_template", "language": {"code": "en_US"}},
        }
    )
    result = sender.send(message)
    assert (result.status, result.reason) == ("failed", "template_error")
    assert attempts(env["DATABASE_URL"], message["idempotency_key"])[0].error_code == 132001


def test_an_expired_token_makes_the_send_wait_for_a_rotation_not_fail(
    sender, simulator, env, redis_client
):
    import requests

    from alfred.tokens.suspect import suspect_since

    open_window(env["DATABASE_URL"], "home", "447700900123")
    requests.post(f"{simulator.url}/_sim/tokens/expire", json={"tenant": "home"}, timeout=5)
    message = stamped(text())
    first = sender.send(message)
    assert (first.status, first.reason) == ("retry", "awaiting_token")
    second = sender.send(retry_of(message, first))
    assert (second.status, second.reason) == ("retry", "awaiting_token")
    # The calls are audited but do not use up the message's attempts.
    assert [a.attempt for a in attempts(env["DATABASE_URL"], message["idempotency_key"])] == [1, 1]
    assert suspect_since(redis_client, "home") is not None
    assert redis_client.exists("alfred:tokens:requested:home")  # a rotation was asked for
    assert stream_entries(redis_client) == []  # no send_failed


def test_exhausted_retries_go_to_the_dead_letters_and_can_be_replayed(
    sender, simulator, env, redis_client
):
    from alfred.messages import store
    from alfred.outbound.ratelimit import SendLimiter

    # Eight tries to one user inside a second would be paced; this test is about retries.
    sender.limiter = SendLimiter(redis_client, pair_burst=100)
    open_window(env["DATABASE_URL"], "home", "447700900123")
    simulator.state.set_faults(FaultConfig(error_rates={131000: 1.0}))
    message = stamped(text(idempotency_key="doomed"))
    statuses = []
    for _ in range(service.MAX_ATTEMPTS):
        outcome = sender.send(message)
        statuses.append(outcome.status)
        message = retry_of(message, outcome)
    assert statuses == ["retry"] * (service.MAX_ATTEMPTS - 1) + ["dead_lettered"]
    assert row(env["DATABASE_URL"], "doomed").attempts == service.MAX_ATTEMPTS
    (event,) = stream_entries(redis_client)
    assert (event["event"], event["envelope"]["id"]) == ("send_failed", "doomed")
    with session_scope(env["DATABASE_URL"]) as session:
        (dead,) = store.dead_letters(session)
        replayed = store.reopen(session, dead, redis_client)
    assert "attempts_made" not in replayed  # fresh attempts
    simulator.state.set_faults(FaultConfig())
    assert sender.send(replayed).status == "sent"
    assert row(env["DATABASE_URL"], "doomed").status == "accepted"
    # Every call is audited, the replayed one included.
    assert len(attempts(env["DATABASE_URL"], "doomed")) == service.MAX_ATTEMPTS + 1


def test_a_long_reply_is_split_and_sent_in_order(sender, simulator, env):
    open_window(env["DATABASE_URL"], "home", "447700900123")
    paragraphs = [f"Paragraph {i}. " + "word " * 300 for i in range(10)]
    body = "\n\n".join(paragraphs)
    assert len(body) > 3 * 4096
    outcome = sender.send(stamped(text(body=body, idempotency_key="essay")))
    # Split at paragraph boundaries: two ~1,500-character paragraphs per part.
    assert outcome.status == "sent" and len(outcome.wamids) == 5
    sent = simulator.state.messages()
    parts = [m["body"]["text"]["body"] for m in sent]
    assert all(len(p) <= 4096 for p in parts)
    assert " ".join(parts).split() == body.split()
    assert [m["key"] for m in sent] == [f"essay#{i}/5" for i in range(1, 6)]
    assert all(p.startswith("Paragraph") for p in parts)
    assert [m["accepted_at"] for m in sent] == sorted(m["accepted_at"] for m in sent)


def test_a_recipient_is_paced_without_slowing_others(sender, simulator, env):
    open_window(env["DATABASE_URL"], "home", "447700900123", "447700900999")
    results = [sender.send(stamped(text())) for _ in range(8)]
    paced = [r for r in results if r.status == "retry"]
    assert paced and all(r.reason == "paced" and r.retry_in > 1 for r in paced)
    other = sender.send(stamped(text(to="+447700900999")))
    assert other.status == "sent"
    stats = simulator.state.stats()
    assert stats["tenants"]["home"]["rejected"] == {}  # never a 131056 from Meta


def test_the_full_loop_user_writes_alfred_answers_statuses_come_back(
    looped_simulator, celery_worker, env, redis_client
):
    import requests

    from alfred.tasks import send_message

    user = "+15551230077"
    answer = requests.post(
        f"{looped_simulator.url}/_sim/inbound",
        json={"tenant": "biz", "from": user, "type": "text", "text": "Hi!"},
        timeout=5,
    )
    assert answer.status_code == 200
    inbound = wait_for(lambda: [e for e in stream_entries(redis_client) if e["event"] == "message"])
    assert inbound[0]["envelope"]["text"] == "Hi!"
    key = uuid.uuid4().hex
    send_message.delay(
        {
            "tenant_id": "biz",
            "to": user,
            "type": "text",
            "text": {"body": "Hello!"},
            "idempotency_key": key,
        }
    )
    statuses = wait_for(
        lambda: (
            {
                e["envelope"]["status"]
                for e in stream_entries(redis_client)
                if e["event"] == "status"
            }
            >= {"sent", "delivered", "read"}
            and [e for e in stream_entries(redis_client) if e["event"] == "status"]
        )
    )
    assert {s["envelope"]["biz_opaque_callback_data"] for s in statuses} == {key}
    # The row may be in the worker's audit batch, not yet committed: None means not yet.
    wait_for(lambda: getattr(row(env["DATABASE_URL"], key), "status", None) == "read")
    assert redis_client.xlen(INGEST_STREAM) == 4  # 1 message + 3 statuses, each once


def test_parts_can_wait_for_the_previous_part_to_be_delivered(
    sender, simulator, env, settings, redis_client
):
    from alfred.ingest.service import ingest_body
    from tests.helpers import fixture

    sender.chunk_order = "delivered"
    open_window(env["DATABASE_URL"], "home", "447700900123")
    body = "\n\n".join(f"Part {i}. " + "word " * 700 for i in range(2))
    message = stamped(text(body=body, idempotency_key="ordered"))
    first = sender.send(message)
    assert (first.status, first.reason) == ("retry", "awaiting_delivery_of_previous_part")
    (part_one,) = simulator.state.messages()
    assert sender.send(message).status == "retry"  # still not delivered: nothing more sent
    assert len(simulator.state.messages()) == 1

    delivered = fixture("status_delivered")
    status = delivered["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["id"] = part_one["wamid"]
    ingest_body(
        json.dumps(delivered), received_at=time.time(), settings=settings, client=redis_client
    )
    assert sender.send(message).status == "sent"
    assert [m["key"] for m in simulator.state.messages()] == ["ordered#1/2", "ordered#2/2"]


def inbound_wamid(simulator, user: str = USER) -> str:
    """Have a simulated user write to the home tenant; return the inbound message's wamid."""
    import requests

    inbound = requests.post(
        f"{simulator.url}/_sim/inbound",
        json={"tenant": "home", "from": user, "type": "text", "text": "hi"},
        timeout=5,
    ).json()
    return inbound.get("wamid") or inbound["messages"][0]["id"]


def test_an_inbound_message_is_marked_read_with_a_typing_indicator(simulator, env):
    from alfred.tasks import mark_as_read

    wamid = inbound_wamid(simulator)
    assert mark_as_read.apply(args=["home", wamid], kwargs={"typing_indicator": True}).get()
    assert simulator.state.stats()["tenants"]["home"]["marked_read"] == 1


def take_queued_task(redis_client, queue: str = "outbound") -> tuple[list, dict]:
    """Pop the next task off a queue, as a worker would, and return its args and kwargs."""
    return task_arguments(redis_client.rpop(queue))


def test_a_read_receipt_lost_with_its_worker_is_redriven(simulator, env, redis_client):
    from alfred.journals.sweeper import ON_START_MIN_AGE_S, sweep_all
    from alfred.outbound.receipts import read_journal
    from alfred.tasks import mark_as_read

    wamid = inbound_wamid(simulator)
    mark_as_read.delay("home", wamid)
    take_queued_task(redis_client)  # taken by a worker that is killed before it calls Meta
    assert read_journal(redis_client).size() == 1
    assert sweep_all(min_age=ON_START_MIN_AGE_S)["read"] == 1  # a worker starting again
    _args, receipt = take_queued_task(redis_client)
    assert receipt == {"tenant_id": "home", "message_id": wamid}
    assert mark_as_read.apply(kwargs=receipt).get() is True
    assert simulator.state.stats()["tenants"]["home"]["marked_read"] == 1
    assert read_journal(redis_client).size() == 0


def test_a_read_receipt_meta_refuses_leaves_the_journal_with_a_reason(
    simulator, env, redis_client, caplog
):
    from alfred.outbound.receipts import read_journal
    from alfred.tasks import mark_as_read

    mark_as_read.delay("home", "wamid.never-received")
    _args, receipt = take_queued_task(redis_client)
    assert mark_as_read.apply(kwargs=receipt).failed()
    assert read_journal(redis_client).size() == 0
    assert any(r.getMessage() == "read.failed" for r in caplog.records)


def test_a_queued_send_shows_flower_neither_its_recipient_nor_its_words(env, redis_client):
    from alfred.tasks import send_message

    send_message.delay(text(body="my private words", idempotency_key="shown"))
    headers = json.loads(redis_client.lindex("outbound", -1))["headers"]
    assert headers["argsrepr"] == "[{tenant_id: 'home', idempotency_key: 'shown', type: 'text'}]"
    assert task_arguments(redis_client.lindex("outbound", -1))[0][0]["text"]["body"] == (
        "my private words"  # the task itself still carries the whole message
    )
