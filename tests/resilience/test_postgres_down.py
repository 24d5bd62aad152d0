"""PostgreSQL down for a minute mid-load: ingest still reaches the stream, and storage and the
audit trail catch up once it is back, with no process restarting.

Real processes: gunicorn, a Celery worker and beat on a PostgreSQL cluster of the test's own
(initdb on a free port: stopping the shared server would stop everyone's tests), the shared test
Redis, and the simulator wired both ways. Deliveries come in at a steady pace and sends go out
through the whole outage.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from alfred.db import get_engine, session_scope
from alfred.migrate import upgrade
from alfred.models import Message, SendAttempt
from alfred.models.messages import INBOUND, OUTBOUND
from alfred.simulator.testing import running_simulator
from alfred.windows import remember_open
from tests.conftest import _simulator_config, free_port
from tests.integration.test_send_pipeline import open_window
from tests.processes import PrivatePostgres
from tests.resilience.harness import (
    Figures,
    MetaLikeSender,
    PeakRss,
    pending,
    running_stack,
    stream_ids,
    wait,
)

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(400),
]
DOWN_S = 60.0
DELIVERIES = 240  # at 3/s: the outage sits inside the load
SENDS = 60
USERS = [f"+4477012{n:05d}" for n in range(SENDS)]


def _publish_sends(keys: list[str], rate_per_s: float, users: list[str]) -> threading.Thread:
    from alfred.tasks import send_message

    def run() -> None:
        for key, user in zip(keys, users, strict=True):
            send_message.delay(
                {"tenant_id": "biz", "to": user, "type": "text",
                 "text": {"body": f"answer {key}"}, "idempotency_key": key}
            )  # fmt: skip
            time.sleep(1 / rate_per_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _stored(url: str, wamids: set[str], keys: list[str]) -> tuple[int, int, int]:
    """Inbound rows among the wamids, outbound rows with a wamid, and accepted calls recorded."""
    with session_scope(url) as session:
        inbound = session.scalar(
            select(func.count()).where(Message.direction == INBOUND, Message.wamid.in_(wamids))
        )
        outbound = session.scalar(
            select(func.count()).where(
                Message.direction == OUTBOUND,
                Message.idempotency_key.in_(keys),
                Message.wamid.is_not(None),
            )
        )
        calls = session.scalar(
            select(func.count(func.distinct(SendAttempt.idempotency_key))).where(
                SendAttempt.idempotency_key.in_(keys), SendAttempt.http_status == 200
            )
        )
    return int(inbound or 0), int(outbound or 0), int(calls or 0)


def test_postgres_down_for_a_minute_ingest_goes_on_and_storage_catches_up(
    env, redis_client, tmp_path
):
    pg = PrivatePostgres(tmp_path / "pg").init()
    upgrade(pg.url)
    # The users wrote within the day: their windows are in the database and, as every inbound
    # message leaves them, in Redis, where the sender looks first.
    open_window(pg.url, "biz", *[u.lstrip("+") for u in USERS])
    pipe = redis_client.pipeline()
    for user in USERS:
        remember_open(pipe, "biz", user.lstrip("+"), time.time())
    pipe.execute()
    keys = [f"pgdown-{uuid.uuid4().hex[:8]}-{n}" for n in range(SENDS)]
    port = free_port()
    config = _simulator_config(
        f"http://127.0.0.1:{port}/webhook", status_delay_s=0.01, enforce_window=False
    )
    figures = Figures("postgres-down", faults=f"PostgreSQL stopped (fast) for {DOWN_S:g}s")
    try:
        with (
            running_simulator(config) as meta,
            running_stack(
                tmp_path, {"DATABASE_URL": pg.url, "GRAPH_API_URL": meta.url}, beat=True, port=port
            ) as stack,
        ):
            pids = {"web": stack.web.pid, "worker": stack.worker.pid, "beat": stack.beat.pid}
            sender = MetaLikeSender(f"{stack.url}/webhook")
            with PeakRss(stack.pids()) as rss:
                pool = sender.run(DELIVERIES, "pgdown", threads=2, rate_per_s=3)
                warm = _publish_sends(keys[:5], rate_per_s=5, users=USERS[:5])
                # A running bridge: some ingested, some sent (its token read) before the outage.
                assert wait(
                    lambda: (
                        len(set(stream_ids(redis_client))) >= 10
                        and len(meta.state.messages(limit=10)) >= 5
                    ),
                    60,
                )
                warm.join(10)
                get_engine(pg.url).dispose()  # the test's own connections: not the server's
                pg.stop()
                stopped = time.monotonic()
                publisher = _publish_sends(
                    keys[5:], rate_per_s=SENDS / (DOWN_S / 2), users=USERS[5:]
                )
                time.sleep(DOWN_S)
                # What the outage let through: deliveries answered, events in the stream.
                during = (
                    len(sender.accepted),
                    len(set(stream_ids(redis_client)) & sender.accepted),
                )
                sent_during = len({m["key"] for m in meta.state.messages(limit=1000)})
                pg.start()
                restarted = time.monotonic()
                for thread in [*pool, publisher]:
                    thread.join(120)
                caught_up = wait(
                    lambda: (
                        set(stream_ids(redis_client)) >= sender.accepted
                        and not pending(redis_client)
                        and _stored(pg.url, sender.accepted, keys)
                        == (len(sender.accepted), SENDS, SENDS)
                    ),
                    90,
                    every_s=0.5,
                )
                drained = time.monotonic()
                stored = _stored(pg.url, sender.accepted, keys)
                left = pending(redis_client)
                ids = stream_ids(redis_client)
                sent = [m["key"] for m in meta.state.messages(limit=1000) if m["key"] in keys]
                alive = {
                    name: (process.poll() is None)
                    for name, process in [("web", stack.web), ("worker", stack.worker),
                                          ("beat", stack.beat)]
                }  # fmt: skip
                web_boots = len(re.findall(r"Booting worker", stack.log_tail("web", 10**7)))
            figures.peak_rss_mb = rss.peak
    finally:
        get_engine(pg.url).dispose()
        pg.stop()
    figures.messages_in = len(sender.accepted) + len(keys)
    figures.messages_out = len(set(ids) & sender.accepted) + len(set(sent))
    figures.lost = len(sender.accepted - set(ids)) + len(set(keys) - set(sent))
    figures.duplicated = (
        len([i for i in ids if i in sender.accepted]) - len(set(ids) & sender.accepted)
    ) + (len(sent) - len(set(sent)))
    figures.recovery_s = drained - restarted
    figures.notes = (
        f"during_outage=answered:{during[0]},in_stream:{during[1]},sent:{sent_during}"
        f" stored=inbound:{stored[0]},outbound:{stored[1]},audited:{stored[2]}"
        f" left={left or 'nothing'} alive={alive} gunicorn_boots={web_boots}"
        f" outage={restarted - stopped:.0f}s"
    )
    figures.report()
    assert caught_up, figures.line() + "\n" + stack.log_tail()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    assert all(alive.values()) and pids == {
        "web": stack.web.pid,
        "worker": stack.worker.pid,
        "beat": stack.beat.pid,
    }, figures.line()
    assert web_boots == 2, figures.line()  # gunicorn's two workers, never re-booted
    # The outage did not hold ingest back: what was answered early in it was in the stream.
    assert during[1] >= during[0] - 10, figures.line()
