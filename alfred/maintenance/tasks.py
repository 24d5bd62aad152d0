"""Celery tasks of upkeep: the journal sweeper."""

from __future__ import annotations

import time

from celery import shared_task
from celery.signals import worker_ready

from alfred import runtime
from alfred.ingest.receive import REDRIVE_AFTER_S, ingest_journal
from alfred.ingest.tasks import publish_ingest
from alfred.maintenance.sweeper import sweep
from alfred.outbound.journal import REDRIVE_AFTER_S as SEND_REDRIVE_AFTER_S
from alfred.outbound.journal import outbound_journal, publish_send

# A worker that starts re-drives at once what arrived this long ago and is still pending,
# instead of waiting for the entry to fall due: recovery after an OOM kill then takes
# seconds, not REDRIVE_AFTER_S.
ON_START_MIN_AGE_S = 5.0


def sweep_all(now: float | None = None) -> dict[str, int]:
    """Re-drive both journals; return how many entries each re-published."""
    client = runtime.redis_client()
    ingest = sweep(
        ingest_journal(client), "ingest", lease=REDRIVE_AFTER_S, publish=publish_ingest, now=now
    )
    sends = sweep(
        outbound_journal(client),
        "outbound",
        lease=SEND_REDRIVE_AFTER_S,
        publish=publish_send,
        now=now,
    )
    return {"ingest": len(ingest), "outbound": len(sends)}


@shared_task(name="alfred.sweep_journals", ignore_result=True)
def sweep_journals() -> dict[str, int]:
    """Re-drive journaled work whose task was lost."""
    return sweep_all()


@worker_ready.connect
def _sweep_on_start(**_kwargs) -> None:
    now = time.time()
    client = runtime.redis_client()
    sweep(
        ingest_journal(client),
        "ingest",
        lease=REDRIVE_AFTER_S,
        publish=publish_ingest,
        now=now + REDRIVE_AFTER_S - ON_START_MIN_AGE_S,
    )
    sweep(
        outbound_journal(client),
        "outbound",
        lease=SEND_REDRIVE_AFTER_S,
        publish=publish_send,
        now=now + SEND_REDRIVE_AFTER_S - ON_START_MIN_AGE_S,
    )
