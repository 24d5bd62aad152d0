"""Read receipts (mark as read) kept in a journal from publish until Meta has answered."""

from __future__ import annotations

from functools import lru_cache

import redis

from alfred.journals.journal import Journal

READ_JOURNAL = "read"


@lru_cache(maxsize=8)
def read_journal(client: redis.Redis) -> Journal:
    """Return the journal of read receipts not yet answered by Meta."""
    return Journal(client, READ_JOURNAL)


def entry_id(tenant_id: str, message_id: str) -> str:
    """Name a receipt in the journal by its tenant and the inbound message's wamid."""
    return f"{tenant_id}:{message_id}"
