"""The two Redis streams: «alfred-ingest» (appended exactly once) and «alfred-outbox».

The one place that appends to «alfred-ingest»: the ingest worker's events, replays, and the
sender's send_failed events all go through append_events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import redis

from alfred.config import DEFAULT_STREAM_MAXLEN

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
# and a retry appends. Redis does not roll a script back, hence this order. MAXLEN is a
# backstop: the PII lifecycle trims the stream to its hot window (alfred/lifecycle/).
_APPEND_ONCE = """
local seen = redis.call('GET', KEYS[1])
if seen then return {0, seen} end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'tenant_id', ARGV[2],
                         'event', ARGV[3], 'payload', ARGV[4])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {1, entry}
"""


@dataclass(frozen=True)
class InboundEvent:
    """One event for the «alfred-ingest» stream, with its envelope."""

    tenant_id: str
    event: str
    id: str
    dedupe_key: str
    timestamp: int
    envelope: dict


@dataclass(frozen=True)
class AppendResult:
    appended: bool
    entry_id: str


class IngestStream:
    """Appends envelopes to «alfred-ingest», each at most once per dedupe key."""

    def __init__(
        self, client: redis.Redis, stream: str = INGEST_STREAM,
        maxlen: int = DEFAULT_STREAM_MAXLEN,
    ):  # fmt: skip
        self._client = client
        self._stream = stream
        self._maxlen = maxlen
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
            args=[DEDUPE_TTL_S, tenant_id, event, payload, self._maxlen],
            client=client or self._client,
        )
        return None if client is not None else to_result(result)


def to_result(raw: list) -> AppendResult:
    """Read the script's answer: [1, id] appended, [0, id] already there."""
    flag, entry = raw
    return AppendResult(
        appended=bool(flag), entry_id=entry.decode() if isinstance(entry, bytes) else entry
    )


def append_events(
    client: redis.Redis,
    events: list[InboundEvent],
    *,
    before: Callable[[redis.client.Pipeline, list[InboundEvent]], int] | None = None,
) -> list[bool]:
    """Append each event once, in order, in one round trip; return which were new.

    `before` queues commands of its own on the same pipeline ahead of the appends (the ingest
    worker's sent marks and windows) and returns how many it queued.
    """
    if not events:
        return []
    stream = _stream(client)
    pipe = client.pipeline(transaction=False)
    marks = before(pipe, events) if before is not None else 0
    for event in events:
        stream.append_once(
            tenant_id=event.tenant_id,
            event=event.event,
            dedupe_key=event.dedupe_key,
            payload=json.dumps(
                event.envelope, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ),
            client=pipe,
        )
    return [to_result(raw).appended for raw in pipe.execute()[marks:]]


@lru_cache(maxsize=8)
def _stream(client: redis.Redis) -> IngestStream:
    from alfred import runtime

    return IngestStream(client, maxlen=runtime.settings().stream_maxlen)
