"""Read receipts (mark as read) kept in a journal from publish until Meta has answered."""

from __future__ import annotations

import json
from functools import lru_cache

import redis

from alfred.journal import Journal

READ_JOURNAL = "read"
# A receipt still journaled this long past its due time lost its task; re-drive it.
REDRIVE_AFTER_S = 30.0


@lru_cache(maxsize=8)
def read_journal(client: redis.Redis) -> Journal:
    """Return the journal of read receipts not yet answered by Meta."""
    return Journal(client, READ_JOURNAL)


def entry_id(tenant_id: str, message_id: str) -> str:
    """Name a receipt in the journal by its tenant and the inbound message's wamid."""
    return f"{tenant_id}:{message_id}"


def publish_read(journal_entry: str) -> None:
    """Publish the mark-as-read task again for a journaled receipt (the sweeper's re-drive)."""
    from alfred import runtime
    from alfred.outbound.tasks import mark_as_read

    record = read_journal(runtime.redis_client()).get(journal_entry)
    if record is not None:
        mark_as_read.apply_async(kwargs=json.loads(record))
