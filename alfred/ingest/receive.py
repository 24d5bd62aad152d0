"""The web side of ingest: journal a verified delivery, then publish its Celery task."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import redis

from alfred.journal import Journal

INGEST_JOURNAL = "ingest"
# A delivery still in the journal this long after arrival lost its task; re-drive it.
REDRIVE_AFTER_S = 30.0


def ingest_journal(client: redis.Redis) -> Journal:
    """Return the journal of webhook deliveries not yet in «alfred-ingest»."""
    return Journal(client, INGEST_JOURNAL)


def encode_record(received_at: float, body: bytes) -> bytes:
    """Pack the arrival time (first line) and the raw body exactly as signed."""
    return repr(received_at).encode() + b"\n" + body


def decode_record(record: bytes) -> tuple[float, bytes]:
    """Unpack what encode_record packed."""
    head, _, body = record.partition(b"\n")
    return float(head), body


def accept_delivery(
    body: bytes,
    *,
    received_at: float,
    journal: Journal,
    publish: Callable[[str], object],
) -> str:
    """Make a delivery durable and hand it to a worker; raise if Redis refuses either step."""
    delivery_id = uuid.uuid4().hex
    journal.add(delivery_id, encode_record(received_at, body), due_in=REDRIVE_AFTER_S)
    publish(delivery_id)
    return delivery_id
