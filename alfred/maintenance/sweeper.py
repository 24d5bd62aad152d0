"""Re-publish journaled work whose task was lost (a SIGKILLed worker, a dropped message)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from alfred import metrics
from alfred.journal import Journal

log = logging.getLogger(__name__)


def sweep(
    journal: Journal,
    name: str,
    *,
    lease: float,
    publish: Callable[[str], object],
    now: float | None = None,
) -> list[str]:
    """Claim every overdue entry of a journal and publish its task again."""
    ids = journal.claim_due(now=now, lease=lease)
    for entry_id in ids:
        publish(entry_id)
    if ids:
        metrics.JOURNAL_REDRIVES.labels(name).inc(len(ids))
        log.warning("journal.redriven", extra={"journal": name, "count": len(ids)})
    metrics.JOURNAL_SIZE.labels(name).set(journal.size())
    return ids
