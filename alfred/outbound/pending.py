"""Outbound messages kept durable in a journal from enqueue until their outcome is recorded."""

from __future__ import annotations

from functools import lru_cache

import redis

from alfred.journals.journal import Journal

OUTBOUND_JOURNAL = "outbound"


@lru_cache(maxsize=8)
def outbound_journal(client: redis.Redis) -> Journal:
    """Return the journal of messages not yet sent, failed or dead-lettered."""
    return Journal(client, OUTBOUND_JOURNAL)


def entry_id(message: dict) -> str:
    """Name a message in the journal by its tenant and idempotency key."""
    return f"{message.get('tenant_id')}:{message.get('idempotency_key')}"
