"""Re-publish journaled work whose task was lost (a SIGKILLed worker, a dropped message)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from alfred import metrics
from alfred.journal import Journal

log = logging.getLogger(__name__)

# Claimed and published a few hundred at a time, up to 100,000 a sweep: a backlog after a
# long outage is re-driven in one sweep, without one huge Redis reply.
CLAIM_LIMIT = 500
MAX_ROUNDS = 200


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
