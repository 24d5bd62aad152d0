"""Celery tasks of upkeep: the journal sweeper, on a timer and when a worker starts."""

from __future__ import annotations

import time

from celery import shared_task
from celery.signals import worker_ready

from alfred import runtime
from alfred.ingest.receive import REDRIVE_AFTER_S as INGEST_REDRIVE_AFTER_S
from alfred.ingest.receive import ingest_journal
from alfred.ingest.tasks import redrive_ingest
from alfred.journal import waiting_since
from alfred.maintenance.sweeper import sweep
from alfred.outbound.audit import REDRIVE_AFTER_S as AUDIT_REDRIVE_AFTER_S
from alfred.outbound.audit import audit_journal, redrive_audit
from alfred.outbound.journal import REDRIVE_AFTER_S as SEND_REDRIVE_AFTER_S
from alfred.outbound.journal import outbound_journal, publish_send
from alfred.outbound.receipts import REDRIVE_AFTER_S as READ_REDRIVE_AFTER_S
from alfred.outbound.receipts import publish_read, read_journal

# A worker that starts re-drives at once everything pending that a worker already took,
# instead of waiting for each entry to fall due: work popped by a worker that was then killed
# (a whole ingest batch, a send mid-call) is back within seconds of the restart. Entries
# another live worker is on are re-driven too; that costs a no-op task each (their records
# are gone or deduplicated). Entries whose task still waits in the queue are left alone.
ON_START_MIN_AGE_S = 0.0

# name, journal, how long an entry waits before it is re-driven (again), how to re-drive it,
# and the task whose queue holds one task per entry, if there is such a queue. (An ingest task
# takes a batch of deliveries off a list: a task still queued says nothing of the deliveries
# an earlier one took.)
JOURNALS = (
    ("ingest", ingest_journal, INGEST_REDRIVE_AFTER_S, redrive_ingest, None),
    ("outbound", outbound_journal, SEND_REDRIVE_AFTER_S, publish_send, "alfred.send_message"),
    ("audit", audit_journal, AUDIT_REDRIVE_AFTER_S, redrive_audit, None),
    ("read", read_journal, READ_REDRIVE_AFTER_S, publish_read, "alfred.mark_as_read"),
)


def sweep_all(now: float | None = None, *, min_age: float | None = None) -> dict[str, int]:
    """Re-drive every journal's overdue entries (or, with min_age, all entries that old).

    Only entries whose task a worker already took: a backlog waiting in the queue is not lost
    however old it is, and re-driving it would queue every message twice, sweep after sweep.
    """
    from alfred.celery_app import celery

    client = runtime.redis_client()
    now = time.time() if now is None else now
    counts = {}
    for name, journal, lease, publish, task in JOURNALS:
        # An entry falls due `lease` seconds after it was written: a cutoff of
        # now + lease - min_age selects the entries written at least min_age seconds ago.
        cutoff = now if min_age is None else now + lease - min_age
        queue = celery.conf.task_routes[task]["queue"] if task else None
        oldest_waiting = waiting_since(client, queue) if queue else None
        if oldest_waiting is not None:
            # Entries written from the oldest waiting task's publication on are still queued.
            cutoff = min(cutoff, oldest_waiting + lease)
        claimed = sweep(journal(client), name, lease=lease, publish=publish, now=now, cutoff=cutoff)
        counts[name] = len(claimed)
    return counts


@shared_task(name="alfred.sweep_journals", ignore_result=True)
def sweep_journals() -> dict[str, int]:
    """Re-drive journaled work whose task was lost."""
    return sweep_all()


@worker_ready.connect
def _sweep_on_start(**_kwargs) -> None:
    sweep_all(min_age=ON_START_MIN_AGE_S)
