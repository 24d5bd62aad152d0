"""A token Meta revokes mid-load (190): sends wait for the rotation, none becomes send_failed."""

from __future__ import annotations

import threading
import time

import requests
from sqlalchemy import select

from alfred import runtime
from alfred.db import session_scope
from alfred.models import Message, SendAttempt, TenantToken
from alfred.outbound import service
from alfred.tokens.rotation import Rotator
from alfred.tokens.store import current_token
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import open_window, text

USERS = [f"+4477009{n:05d}" for n in range(40)]


def statuses(database_url: str) -> list[str]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(Message.status).where(Message.direction == "outbound")))


def send_failed(redis_client) -> list[dict]:
    return [e for e in stream_entries(redis_client) if e["event"] == "send_failed"]


def test_a_190_storm_mid_load_recovers_with_no_send_failed(
    simulator, celery_worker, env, redis_client
):
    from alfred.tasks import send_message

    settings = runtime.settings()
    home = settings.tenants["home"]
    for user in USERS:
        open_window(env["DATABASE_URL"], "home", user.lstrip("+"))
    assert Rotator(settings, redis_client).rotate(home).outcome == "rotated"
    in_use = current_token(home, settings).reveal()
    revoked_at: list[float] = []

    def load() -> None:
        for i, user in enumerate(USERS):
            if i == 10:
                requests.post(f"{simulator.url}/_sim/tokens/revoke", json={"token": in_use})
                revoked_at.append(time.time())
            send_message.delay(text(to=user, idempotency_key=f"storm-{i}"))
            time.sleep(0.02)

    thread = threading.Thread(target=load)
    thread.start()
    thread.join(30)
    wait_for(lambda: len(simulator.state.messages(limit=1000)) >= len(USERS), timeout=60)
    time.sleep(0.5)
    accepted = simulator.state.messages(limit=1000)
    assert sorted(m["key"] for m in accepted) == sorted(f"storm-{i}" for i in range(len(USERS)))
    with session_scope(env["DATABASE_URL"]) as session:
        refused = session.scalars(select(SendAttempt).where(SendAttempt.error_code == 190)).all()
        assert len(refused) >= 1  # the storm happened
    assert send_failed(redis_client) == []
    wait_for(
        lambda: set(statuses(env["DATABASE_URL"])) <= {"accepted", "sent", "delivered", "read"}
    )
    with session_scope(env["DATABASE_URL"]) as session:
        stored = session.scalars(select(TenantToken).where(TenantToken.tenant_id == "home")).all()
        assert len(stored) == 2  # rotated once more, after the revocation
    after = sorted(m["accepted_at"] for m in accepted if m["accepted_at"] > revoked_at[0])
    print(f"190 -> first send with the new token: {after[0] - revoked_at[0]:.3f} s")


def test_sends_wait_a_bounded_time_then_dead_letter_replayably(
    simulator, celery_worker, env, redis_client, monkeypatch
):
    from alfred.messages.store import dead_letters
    from alfred.tasks import send_message

    monkeypatch.setattr(service, "MAX_WAIT_S", 2.0)
    open_window(env["DATABASE_URL"], "home", USERS[0].lstrip("+"))
    # Every token of the number is dead, and no rotation can help.
    requests.post(f"{simulator.url}/_sim/tokens/expire", json={"tenant": "home"})
    send_message.delay(text(to=USERS[0], idempotency_key="waits"))
    time.sleep(1.0)
    assert send_failed(redis_client) == []  # waiting, not failed
    wait_for(lambda: "dead_lettered" in statuses(env["DATABASE_URL"]), timeout=30)
    with session_scope(env["DATABASE_URL"]) as session:
        (letter,) = dead_letters(session)
        assert letter.idempotency_key == "waits"
        assert letter.error_reason == "access_token_expired"
