"""What the Redis streams hold of a person: entries archived per tenant, then deleted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

import redis

from alfred.streams import INGEST_STREAM, OUTBOUND_GROUP, OUTBOX_STREAM

SCAN_COUNT = 1000


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_ms(entry_id: str) -> int:
    """Return the milliseconds part of a stream entry id."""
    return int(entry_id.split("-", 1)[0])


def entry_day(entry_id: str) -> date:
    """Return the UTC day an entry was added."""
    return datetime.fromtimestamp(entry_ms(entry_id) / 1000, UTC).date()


def cutoff_id(cutoff: datetime) -> str:
    """Return the smallest entry id at or after a time (XTRIM MINID's bound)."""
    return f"{int(cutoff.timestamp() * 1000)}-0"


def entry_tenant(fields: dict) -> str:
    """Name the tenant of an entry: its field, else the outbox message's own."""
    if "tenant_id" in fields:
        return fields["tenant_id"]
    try:
        message = json.loads(fields.get("payload", ""))
    except ValueError:
        return ""
    return str(message.get("tenant_id") or "") if isinstance(message, dict) else ""


@dataclass(frozen=True)
class StreamSource:
    """One stream: its entries older than the hot window go to cold archives, then away."""

    name: str
    stream: str
    # The consumer group whose entries still in flight must stay (the outbox bridge's).
    group: str | None = None

    def _read(self, client: redis.Redis, start: str, end: str, count: int) -> list:
        return [
            (_text(i), {_text(k): _text(v) for k, v in f.items()})
            for i, f in client.xrange(self.stream, min=start, max=end, count=count)
        ]

    def in_flight(self, client: redis.Redis) -> set[str]:
        """Return the ids read by the group but not acknowledged: those are not done with."""
        if self.group is None:
            return set()
        try:
            pending = client.xpending_range(self.stream, self.group, "-", "+", 1_000_000)
        except redis.ResponseError:  # no such group: nothing in flight
            return set()
        return {_text(p["message_id"]) for p in pending}

    def next_batch(
        self,
        client: redis.Redis,
        tenant_id: str,
        after: str | None,
        cutoff: datetime,
        limit: int,
        *,
        one_day: bool = True,
    ) -> list[tuple[str, dict]]:
        """Return up to `limit` due entries of one tenant (and one day), after an id."""
        start = f"({after}" if after else "-"
        end = f"({cutoff_id(cutoff)}"
        skip = self.in_flight(client)
        batch: list[tuple[str, dict]] = []
        day = None
        while len(batch) < limit:
            entries = self._read(client, start, end, SCAN_COUNT)
            if not entries:
                break
            for entry_id, fields in entries:
                if entry_id in skip or entry_tenant(fields) != tenant_id:
                    continue
                if day is None:
                    day = entry_day(entry_id)
                if (one_day and entry_day(entry_id) != day) or len(batch) >= limit:
                    return batch
                batch.append((entry_id, fields))
            start = f"({entries[-1][0]}"
        return batch

    def entries_between(
        self, client: redis.Redis, tenant_id: str, first: str, last: str
    ) -> list[tuple[str, dict]]:
        """Return the tenant's entries of an archive's range, in-flight ones left out."""
        skip = self.in_flight(client)
        found, start = [], first
        while True:
            entries = self._read(client, start, last, SCAN_COUNT)
            found += [(i, f) for i, f in entries if i not in skip and entry_tenant(f) == tenant_id]
            if len(entries) < SCAN_COUNT:
                return found
            start = f"({entries[-1][0]}"

    @staticmethod
    def records(entries: list[tuple[str, dict]], stream: str) -> list[dict]:
        """Render entries as archive records."""
        return [{"stream": stream, "id": i, "fields": f} for i, f in entries]

    def delete(self, client: redis.Redis, ids: list[str]) -> int:
        """Delete entries by id (XDEL), in chunks."""
        deleted = 0
        for start in range(0, len(ids), SCAN_COUNT):
            deleted += client.xdel(self.stream, *ids[start : start + SCAN_COUNT])
        return deleted

    def trim(self, client: redis.Redis, cutoff: datetime) -> int:
        """Trim everything older than the hot window, keeping entries still in flight."""
        bound = cutoff_id(cutoff)
        skip = self.in_flight(client)
        if skip:
            oldest = min(skip, key=lambda i: tuple(int(p) for p in i.split("-")))
            if entry_ms(oldest) < entry_ms(bound):
                bound = oldest
        return client.xtrim(self.stream, minid=bound, approximate=False)


INGEST = StreamSource("ingest_stream", INGEST_STREAM)
OUTBOX = StreamSource("outbox_stream", OUTBOX_STREAM, group=OUTBOUND_GROUP)
STREAMS = (INGEST, OUTBOX)
BY_NAME = {s.name: s for s in STREAMS}


def sent_outbox_entries(client: redis.Redis, is_sent) -> list[str]:
    """Return the ids of outbox entries the bridge acknowledged whose message was sent."""
    skip = OUTBOX.in_flight(client)
    try:
        groups = client.xinfo_groups(OUTBOX_STREAM)
    except redis.ResponseError:
        return []
    delivered = [
        _text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == OUTBOUND_GROUP
    ]
    if not delivered:
        return []
    done, start = [], "-"
    while True:
        entries = OUTBOX._read(client, start, delivered[0], SCAN_COUNT)
        candidates = {}
        for entry_id, fields in entries:
            if entry_id in skip:
                continue
            try:
                message = json.loads(fields.get("payload", ""))
            except ValueError:
                continue
            if isinstance(message, dict):
                key = message.get("idempotency_key") or f"outbox:{entry_id}"
                candidates[entry_id] = (str(message.get("tenant_id") or ""), str(key))
        done += is_sent(candidates)
        if len(entries) < SCAN_COUNT:
            return done
        start = f"({entries[-1][0]}"
