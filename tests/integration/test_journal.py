"""The journal and its sweeper, against real Redis."""

from __future__ import annotations

import time

from alfred.journal import Journal
from alfred.maintenance.sweeper import CLAIM_LIMIT, sweep


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
