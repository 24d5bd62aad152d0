"""Re-publish journaled work whose task was lost (a SIGKILLed worker, a dropped message)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from celery import current_app

from alfred import metrics, runtime
from alfred.journals.journal import Journal, registered, waiting_since

log = logging.getLogger(__name__)

# Claimed and published a few hundred at a time, up to 100,000 a sweep: a backlog after a
# long outage is re-driven in one sweep, without one huge Redis reply.
CLAIM_LIMIT = 500
MAX_ROUNDS = 200
# A worker that starts re-drives at once everything pending that a worker already took,
# instead of waiting for each entry to fall due: work popped by a worker that was then killed
# (a whole ingest batch, a send mid-call) is back within seconds of the restart. Entries
# another live worker is on are re-driven too; that costs a no-op task each (their records
# are gone or deduplicated). Entries whose task still waits in the queue are left alone.
ON_START_MIN_AGE_S = 0.0


def sweep(
    journal: Journal,
    name: str,
    *,
    lease: float,
    publish: Callable[[str], object],
    now: float | None = None,
    cutoff: float | None = None,
) -> list[str]:
    """Claim every entry of a journal due by `cutoff` (default: now) and publish its task again."""
    ids: list[str] = []
    seen: set[str] = set()
    for _ in range(MAX_ROUNDS):
        claimed = journal.claim_due(now=now, lease=lease, cutoff=cutoff, limit=CLAIM_LIMIT)
        fresh = [entry_id for entry_id in claimed if entry_id not in seen]
        for entry_id in fresh:
            publish(entry_id)
        seen.update(fresh)
        ids += fresh
        # A round that brings nothing new means the backlog is done (never loop on it).
        if len(claimed) < CLAIM_LIMIT or not fresh:
            break
    if ids:
        metrics.JOURNAL_REDRIVES.labels(name).inc(len(ids))
        log.warning("journal.redriven", extra={"journal": name, "count": len(ids)})
    metrics.JOURNAL_SIZE.labels(name).set(journal.size())
    return ids


def sweep_all(
    now: float | None = None,
    *,
    min_age: float | None = None,
    task_routes: Mapping[str, Mapping] | None = None,
) -> dict[str, int]:
    """Re-drive every registered journal's overdue entries (or, with min_age, all that old).

    Only entries whose task a worker already took: a backlog waiting in the queue is not lost
    however old it is, and re-driving it would queue every message twice, sweep after sweep.
    `task_routes` (celeryconfig's, handed in by the task) says which queue holds a task.
    """
    if task_routes is None:  # called by hand: the current Celery app's routes
        task_routes = current_app.conf.task_routes or {}
    client = runtime.redis_client()
    now = time.time() if now is None else now
    counts = {}
    for entry in registered():
        # An entry falls due `lease` seconds after it was written: a cutoff of
        # now + lease - min_age selects the entries written at least min_age seconds ago.
        cutoff = now if min_age is None else now + entry.lease - min_age
        queue = task_routes[entry.task]["queue"] if entry.task else None
        oldest_waiting = waiting_since(client, queue) if queue else None
        if oldest_waiting is not None:
            # Entries written from the oldest waiting task's publication on are still queued.
            cutoff = min(cutoff, oldest_waiting + entry.lease)
        claimed = sweep(
            entry.journal(client),
            entry.name,
            lease=entry.lease,
            publish=entry.redrive,
            now=now,
            cutoff=cutoff,
        )
        counts[entry.name] = len(claimed)
    return counts
