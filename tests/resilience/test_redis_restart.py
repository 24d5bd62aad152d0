"""Redis SIGKILLed mid-load and restarted from its AOF: what was answered 200 survives.

Real processes: gunicorn (gunicorn.conf.py), a Celery worker, a private redis-server with
`appendonly yes`, and a sender that retries as Meta does. PostgreSQL is the shared one.
"""

from __future__ import annotations

import time

import pytest
import redis

from alfred.ingest.receive import ingest_journal
from tests.resilience.harness import (
    Figures,
    MetaLikeSender,
    PeakRss,
    PrivateRedis,
    running_stack,
    stream_ids,
    wait,
)

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(400),
]
DELIVERIES = 300
DOWN_S = 3.0


def _state(client) -> str:
    """What is pending where: the ingest journal, the ready list, the claim, Celery's queues."""
    claim_ttl = client.pttl("alfred:ingest:scheduled")
    return (
        f"journal={client.zcard('alfred:journal:ingest:due')}"
        f" ready={client.llen('alfred:ingest:ready')} claim_pttl={claim_ttl}"
        f" queues=ingest:{client.llen('ingest')},outbound:{client.llen('outbound')},"
        f"alfred:{client.llen('alfred')}"
    )


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_redis_killed_mid_load_and_restarted_from_aof_loses_nothing(env, tmp_path, fsync):
    server = PrivateRedis(tmp_path / "redis", fsync=fsync).start()
    client = redis.Redis.from_url(server.url)
    figures = Figures(
        f"redis-sigkill-restart[aof {fsync}]", faults=f"redis SIGKILL, down {DOWN_S:g}s"
    )
    try:
        # The worker consuming before the load (running_stack waits for it): the kill must find
        # it holding tasks, not still booting, or it proves nothing of a reconnect.
        with running_stack(tmp_path, {"REDIS_URL": server.url}) as stack:
            sender = MetaLikeSender(f"{stack.url}/webhook")
            with PeakRss(stack.pids()) as rss:
                pool = sender.run(DELIVERIES, fsync, rate_per_s=60)
                assert wait(lambda: len(sender.accepted) >= DELIVERIES // 3, 60)
                server.kill()
                killed = time.monotonic()
                time.sleep(DOWN_S)
                server.start()  # the same port and directory: Redis replays its AOF
                restarted = time.monotonic()
                for thread in pool:
                    thread.join(180)
                # No beat runs: what the worker held at the kill comes back by its own re-drive.
                settled = wait(
                    lambda: (
                        set(stream_ids(client)) >= sender.accepted
                        and ingest_journal(client).size() == 0
                    ),
                    90,
                )
                drained = time.monotonic()
                ids = stream_ids(client)
                state = _state(client)
            figures.peak_rss_mb = rss.peak
    finally:
        server.stop()
    down = [a for a in sender.answers if killed + 0.2 <= a.at and a.at + a.seconds <= restarted]
    back = [a.at + a.seconds for a in sender.answers if a.status == 200 and a.at >= restarted]
    figures.messages_in = len(sender.accepted)
    figures.messages_out = len(set(ids))
    figures.lost = len(sender.accepted - set(ids))
    figures.duplicated = len(ids) - len(set(ids))
    figures.recovery_s = (min(back) - restarted) if back else None
    slowest = max((a.seconds for a in down), default=0.0)
    figures.notes = (
        f"answers_while_down={len(down)} statuses={sorted({a.status for a in down}, key=str)}"
        f" slowest_503={slowest * 1000:.0f}ms drained_after_restart={drained - restarted:.1f}s"
    )
    figures.report()
    assert settled, figures.line() + " " + state
    assert sender.abandoned == set()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    assert figures.messages_in == DELIVERIES
    # While Redis was down every answer was a 503 (Meta retries it), never a 500 or no answer.
    assert down and {a.status for a in down} == {503}, figures.line()
