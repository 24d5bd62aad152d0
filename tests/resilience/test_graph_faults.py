"""Graph API faults from the simulator: retries stay bounded, back-off holds, nothing is lost.

A real Celery worker (in-process, threads) sends to the simulator over HTTP; the simulator
fails calls as told and posts its status webhooks back to our web server. Calls per message
come from the simulator's own counters and from each message's row (`attempts`).
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.models import Message
from alfred.models.messages import OUTBOUND
from alfred.outbound.pending import outbound_journal
from alfred.simulator.faults import FaultConfig
from tests.integration.test_ingest_pipeline import wait_for
from tests.integration.test_send_pipeline import flush_audit, open_window
from tests.resilience.harness import Figures

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
USERS = [f"+4477009{n:05d}" for n in range(20)]


def _send_all(count: int) -> list[str]:
    from alfred.tasks import send_message

    keys = []
    for i in range(count):
        key = uuid.uuid4().hex
        keys.append(key)
        send_message.delay(
            {"tenant_id": "biz", "to": USERS[i % len(USERS)], "type": "text",
             "text": {"body": f"message {i}"}, "idempotency_key": key}
        )  # fmt: skip
    return keys


def _rows(database_url: str, keys: list[str]) -> list[Message]:
    flush_audit()
    with session_scope(database_url) as session:
        rows = list(
            session.scalars(
                select(Message).where(
                    Message.direction == OUTBOUND, Message.idempotency_key.in_(keys)
                )
            )
        )
        session.expunge_all()
        return rows


@pytest.mark.parametrize(
    ("name", "faults", "storm_s"),
    [
        ("5xx-storm", FaultConfig(error_rates={131000: 1.0}), 15.0),
        ("429-burst", FaultConfig(error_rates={130429: 0.8}), 5.0),
        ("timeouts", FaultConfig(timeout_rate=0.3, timeout_hold_s=15.0), 10.0),
    ],
)
def test_graph_api_faults_keep_retries_bounded_and_lose_nothing(
    meta, celery_worker, env, redis_client, name, faults, storm_s
):
    # Looped: the simulator's status webhooks come back to our web, as Meta's do; a send whose
    # answer timed out is then known as sent (biz_opaque_callback_data) and never resent.
    simulator = meta
    for user in USERS:
        open_window(env["DATABASE_URL"], "biz", user.lstrip("+"))
    simulator.state.set_faults(faults)
    started = time.monotonic()
    keys = _send_all(40)
    time.sleep(storm_s)
    simulator.state.set_faults(FaultConfig())
    cleared = time.monotonic()
    wait_for(lambda: outbound_journal(redis_client).size() == 0, 240)
    done = time.monotonic()
    rows = _rows(env["DATABASE_URL"], keys)
    stats = simulator.state.stats()["sends"]
    sent = {m["key"] for m in simulator.state.messages(limit=1000)}
    calls = stats["accepted"] + stats["rejected_total"]
    figures = Figures(
        f"graph-{name}",
        messages_in=len(keys),
        messages_out=len(
            [r for r in rows if r.status in ("accepted", "sent", "delivered", "read")]
        ),
        faults=f"{name} for {storm_s:g}s",
        lost=len(set(keys) - {r.idempotency_key for r in rows}),
        duplicated=sum(1 for m in simulator.state.messages(limit=1000) if m["key"] in keys)
        - len(sent & set(keys)),
        recovery_s=done - cleared,
        notes=(
            f"calls={calls} calls_per_message={calls / len(keys):.2f}"
            f" max_attempts={max(r.attempts for r in rows)}"
            f" failed={len([r for r in rows if r.status in ('failed', 'dead_lettered')])}"
            f" elapsed={done - started:.0f}s"
        ),
    )
    figures.report()
    assert figures.lost == 0 and figures.duplicated == 0, figures.line()
    assert {r.status for r in rows} <= {
        "accepted",
        "sent",
        "delivered",
        "read",
        "failed",
        "dead_lettered",
    }
    # Back-off, not a storm: Meta's 4^X spacing allows only a handful of calls in the storm.
    assert max(r.attempts for r in rows) <= 6, figures.line()
