"""The journal and its sweeper, against real Redis."""

from __future__ import annotations

import json
import time

import pytest

from alfred import runtime
from alfred.journals.journal import Journal, waiting_since
from alfred.journals.sweeper import CLAIM_LIMIT, ON_START_MIN_AGE_S, sweep, sweep_all
from tests.helpers import task_arguments


def test_an_entry_is_redriven_once_due_and_not_before(redis_client):
    journal = Journal(redis_client, "test")
    journal.add("a", b"record", due_in=30)
    assert journal.claim_due(lease=30) == []
    now = time.time() + 31
    assert journal.claim_due(now=now, lease=30) == ["a"]
    assert journal.claim_due(now=now, lease=30) == []  # claimed: not handed out twice
    assert journal.get("a") == b"record"


def test_a_claim_with_a_cutoff_leases_from_the_real_now(redis_client):
    journal = Journal(redis_client, "test")
    journal.add("a", b"record", due_in=30)
    now = time.time()
    # A starting worker takes everything pending, however recent.
    assert journal.claim_due(now=now, lease=30, cutoff=now + 30) == ["a"]
    ((_, due),) = redis_client.zrange(journal.due_key, 0, 0, withscores=True)
    assert now + 29 < due < now + 31  # due again 30 s from now, not 30 s past the cutoff


def test_done_entries_are_forgotten(redis_client):
    journal = Journal(redis_client, "test")
    for name in ("a", "b", "c"):
        journal.add(name, name.encode(), due_in=0)
    journal.done("a")
    journal.done_many(["b", "c"])
    assert journal.size() == 0 and journal.get("b") is None


def fill(journal: Journal, total: int, *, due_in: float) -> None:
    """Journal entries "0" … str(total - 1), all due in `due_in` s, in one pipeline."""
    pipe = journal.client.pipeline()
    for i in range(total):
        journal.add(str(i), b"x", due_in=due_in, client=pipe)
    pipe.execute()


def test_the_sweeper_redrives_a_large_backlog_in_one_sweep(redis_client):
    journal = Journal(redis_client, "test")
    total = CLAIM_LIMIT * 2 + 7
    fill(journal, total, due_in=0)
    published: list[str] = []
    ids = sweep(journal, "test", lease=30, publish=published.append, now=time.time() + 1)
    assert len(ids) == len(published) == len(set(published)) == total


def test_a_starting_workers_sweep_publishes_each_pending_entry_once(redis_client):
    # The worker's start sweeps with a cutoff of now + lease: claimed entries, due again at
    # exactly that time, must not be claimed round after round.
    journal = Journal(redis_client, "test")
    total = CLAIM_LIMIT * 3 + 1
    fill(journal, total, due_in=30)
    published: list[str] = []
    now = time.time()
    sweep(journal, "test", lease=30, publish=published.append, now=now, cutoff=now + 30)
    assert len(published) == len(set(published)) == total


@pytest.fixture
def queue_env(monkeypatch, redis_url, redis_client):
    """Point the bridge's Redis and Celery's broker at the emptied test database."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    runtime.reset()
    yield
    runtime.reset()


def publish_sends(prefix: str, count: int) -> None:
    """Publish `count` sends with no worker to take them: they wait in the outbound queue."""
    from alfred.tasks import send_message

    for i in range(count):
        message = {"tenant_id": "home", "to": "+447700900123", "type": "text"}
        send_message.apply_async(
            args=[{**message, "text": {"body": "hi"}, "idempotency_key": f"{prefix}-{i}"}]
        )


def queued_keys(client, queue: str = "outbound") -> list[str]:
    """Return the idempotency keys of the sends waiting in a queue, the next one taken first."""
    return [
        task_arguments(raw)[0][0]["idempotency_key"]
        for raw in reversed(client.lrange(queue, 0, -1))
    ]


def test_the_oldest_waiting_task_tells_when_it_was_published(queue_env, redis_client):
    assert waiting_since(redis_client, "outbound") is None  # nothing waits
    before = time.time()
    publish_sends("first", 1)
    between = time.time()
    publish_sends("second", 1)
    assert before <= waiting_since(redis_client, "outbound") <= between
    redis_client.rpush("outbound", json.dumps({"headers": {}, "body": ""}))
    assert waiting_since(redis_client, "outbound") is None  # no header: not known


def test_the_sweeper_leaves_a_waiting_backlog_alone_however_old(queue_env, redis_client):
    publish_sends("backlog", 5)
    an_hour_later = time.time() + 3600
    assert sweep_all(now=an_hour_later)["outbound"] == 0
    assert sweep_all(min_age=ON_START_MIN_AGE_S)["outbound"] == 0  # nor a worker that starts
    assert redis_client.llen("outbound") == 5


def test_the_sweeper_redrives_the_sends_a_killed_worker_had_taken(queue_env, redis_client):
    publish_sends("taken", 2)
    publish_sends("waiting", 3)
    for _ in range(2):  # a worker takes two tasks, then is SIGKILLed before either is done
        redis_client.rpop("outbound")
    assert sweep_all(min_age=ON_START_MIN_AGE_S)["outbound"] == 2  # a worker starting again
    # The two taken are queued again, behind the three that were waiting all along.
    assert queued_keys(redis_client) == [
        *(f"waiting-{i}" for i in range(3)),
        *(f"taken-{i}" for i in range(2)),
    ]
    assert sweep_all(now=time.time() + 3600)["outbound"] == 0  # and not a second time
