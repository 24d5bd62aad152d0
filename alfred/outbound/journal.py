"""Outbound messages kept durable from enqueue until their outcome is recorded."""

from __future__ import annotations

import json
from functools import lru_cache

import redis

from alfred.journal import Journal

OUTBOUND_JOURNAL = "outbound"
# A message still journaled this long past its due time lost its task; re-drive it.
REDRIVE_AFTER_S = 30.0


@lru_cache(maxsize=8)
def outbound_journal(client: redis.Redis) -> Journal:
    """Return the journal of messages not yet sent, failed or dead-lettered."""
    return Journal(client, OUTBOUND_JOURNAL)


def entry_id(message: dict) -> str:
    """Name a message in the journal by its tenant and idempotency key."""
    return f"{message.get('tenant_id')}:{message.get('idempotency_key')}"


def publish_send(journal_entry: str) -> None:
    """Publish the send task again for a journaled message (the sweeper's re-drive)."""
    from alfred import runtime
    from alfred.outbound.tasks import send_message

    record = outbound_journal(runtime.redis_client()).get(journal_entry)
    if record is not None:
        send_message.apply_async(args=[json.loads(record)])
