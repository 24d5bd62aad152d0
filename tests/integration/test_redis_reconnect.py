"""A worker that loses Redis re-drives, once Redis is back, the work it held when it lost it.

Found by the Redis-restart scenario (tests/resilience/test_redis_restart.py): four ingest tasks
were running when Redis was SIGKILLed; each had popped its batch off the ready list, failed on
Redis, and could not publish its own retry (Celery rejects it), while kombu could not put back
what the worker had fetched. The deliveries stayed journaled with no task and no place on the
ready list, so only beat's sweeper would have brought them back, after their due time; with no
beat they never drained. Here a real worker subprocess and a private redis-server (AOF) stand
in, and no beat runs: what the worker held is left exactly so, as a journal entry with no task.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from alfred.ingest.receive import encode_record, ingest_journal
from alfred.journals.journal import REDRIVE_AFTER_S
from tests.integration.test_ingest_pipeline import wait_for
from tests.processes import PrivateRedis, consuming, kill, start_worker
from tests.resilience.harness import delivery, stream_ids

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _held_by_a_lost_task(client: redis.Redis, index: int, tag: str) -> str:
    """Journal a delivery as a task that popped it and was lost leaves it: no task, not ready."""
    wamid, body = delivery(index, tag)
    ingest_journal(client).add(
        uuid.uuid4().hex, encode_record(time.time(), body), due_in=REDRIVE_AFTER_S
    )
    return wamid


def test_worker_redrives_the_journals_when_its_connection_to_redis_comes_back(env, tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url)
    # Before the worker starts: its start-up sweep re-drives this one, which tells the test the
    # start-up sweep is over (it must not be what picks up the one under test).
    canary = _held_by_a_lost_task(client, 0, "reconnect")
    worker = start_worker({"REDIS_URL": server.url}, log=tmp_path / "worker.log", level="INFO")
    try:
        consuming(client)
        wait_for(lambda: canary in stream_ids(client), timeout=60)
        held = _held_by_a_lost_task(client, 1, "reconnect")
        server.kill()
        time.sleep(1.0)
        server.start()  # the same port and directory: the AOF brings the journal back
        # Without beat, only the worker's re-drive at reconnection can bring it, well before
        # its due time; before the fix it was never ingested.
        wait_for(lambda: held in stream_ids(client), timeout=REDRIVE_AFTER_S - 5)
        wait_for(lambda: ingest_journal(client).size() == 0, timeout=10)
        assert sorted(stream_ids(client)) == sorted([canary, held])  # once each
    except AssertionError:
        log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
        raise AssertionError(
            f"not re-driven once at reconnection; the worker's log:\n{log}"
        ) from None
    finally:
        kill(worker)
        server.stop()
