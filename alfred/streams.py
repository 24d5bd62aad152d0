"""The two Redis streams: «alfred-ingest» (appended exactly once) and «alfred-outbox»."""

from __future__ import annotations

from dataclasses import dataclass

import redis

INGEST_STREAM = "alfred-ingest"
OUTBOX_STREAM = "alfred-outbox"
OUTBOUND_GROUP = "alfred-outbound"
# Meta redelivers for up to 7 days (FACTS F1); remember an event for a day longer.
DEDUPE_TTL_S = 8 * 24 * 3600
DEDUPE_PREFIX = "alfred:seen:"
# How long "this outbound key was accepted by Meta" is remembered: beyond any replay.
SENT_TTL_S = 30 * 24 * 3600


def sent_key(tenant_id: str, key: str) -> str:
    """Name the Redis key remembering that an outbound message (or part) was accepted."""
    return f"alfred:sent:{tenant_id}:{key}"


def final_key(tenant_id: str, key: str) -> str:
    """Name the Redis key holding an outbound message's final failure (until a dlq replay)."""
    return f"alfred:final:{tenant_id}:{key}"


# The duplicate check, the append and the mark happen in one script, so no worker death
# can split them. The mark comes last: if XADD fails (out of memory), nothing is marked
# and a retry appends. Redis does not roll a script back, hence this order.
_APPEND_ONCE = """
local seen = redis.call('GET', KEYS[1])
if seen then return {0, seen} end
local entry = redis.call('XADD', KEYS[2], '*', 'tenant_id', ARGV[2], 'event', ARGV[3],
                         'payload', ARGV[4])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {1, entry}
"""


@dataclass(frozen=True)
class AppendResult:
    appended: bool
    entry_id: str


class IngestStream:
    """Appends envelopes to «alfred-ingest», each at most once per dedupe key."""

    def __init__(self, client: redis.Redis, stream: str = INGEST_STREAM):
        self._client = client
        self._stream = stream
        self._script = client.register_script(_APPEND_ONCE)

    @staticmethod
    def dedupe_key(tenant_id: str, event: str, key: str) -> str:
        """Return the Redis key that remembers one event of one tenant."""
        return f"{DEDUPE_PREFIX}{tenant_id}:{event}:{key}"

    def append_once(
        self, *, tenant_id: str, event: str, dedupe_key: str, payload: str, client=None
    ) -> AppendResult | None:
        """Append one envelope unless its key was seen; with a pipeline as client, queue it."""
        result = self._script(
            keys=[self.dedupe_key(tenant_id, event, dedupe_key), self._stream],
            args=[DEDUPE_TTL_S, tenant_id, event, payload],
            client=client or self._client,
        )
        return None if client is not None else to_result(result)


def to_result(raw: list) -> AppendResult:
    """Read the script's answer: [1, id] appended, [0, id] already there."""
    flag, entry = raw
    return AppendResult(
        appended=bool(flag), entry_id=entry.decode() if isinstance(entry, bytes) else entry
    )
