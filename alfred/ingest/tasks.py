"""Celery tasks of the inbound path: thin wrappers over alfred.ingest.service."""

from __future__ import annotations

from celery import shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from alfred import runtime
from alfred.ingest.receive import (
    INGEST_JOURNAL,
    INGEST_TASK,
    READY_KEY,
    ingest_journal,
    publish_ingest,
)
from alfred.ingest.service import drain_ready
from alfred.journals.journal import register
from alfred.media.tasks import publish_fetches


@shared_task(
    name=INGEST_TASK,
    autoretry_for=(RedisError, OperationalError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=8,
)
def ingest_delivery(delivery_id: str) -> dict:
    """Ingest journaled webhook deliveries into «alfred-ingest», a batch at a time (idempotent)."""
    outcome, more = drain_ready(settings=runtime.settings(), client=runtime.redis_client())
    if more:  # the claim is still held: this task's successor drains the rest
        publish_ingest(delivery_id)
    # After the envelopes: the message is never held back waiting for its media.
    publish_fetches(outcome.media_jobs)
    return {
        "deliveries": outcome.deliveries,
        "appended": outcome.appended,
        "duplicates": outcome.duplicates,
    }


def redrive_ingest(delivery_id: str) -> None:
    """Put a stalled delivery back on the ready list and publish a task for it (the sweeper)."""
    runtime.redis_client().rpush(READY_KEY, delivery_id)
    publish_ingest(delivery_id)


register(INGEST_JOURNAL, ingest_journal, redrive_ingest)
