"""The web side of ingest: journal a verified delivery, then publish its Celery task."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import lru_cache

import redis

from alfred.config import Settings
from alfred.journals.journal import REDRIVE_AFTER_S, Journal

INGEST_JOURNAL = "ingest"
# Ids of journaled deliveries waiting for a worker; a task takes a batch of them at once.
READY_KEY = "alfred:ingest:ready"
# How often each delivery failed on its own (see service.MAX_FAILURES).
FAILURES_KEY = "alfred:ingest:failures"


@lru_cache(maxsize=8)
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
    journal.add(
        delivery_id,
        encode_record(received_at, body),
        due_in=REDRIVE_AFTER_S,
        also_push_to=READY_KEY,
    )
    publish(delivery_id)
    return delivery_id


def tenants_at_the_edge(payload: object, settings: Settings) -> tuple[set[str], set[str]]:
    """Name the tenants a delivery is for, and the numbers or WABAs that belong to none.

    The worker resolves every event again and quarantines the unknown ones; this early
    look lets the web process log and count an unknown number the moment it arrives.
    """
    known: set[str] = set()
    unknown: set[str] = set()
    entries = payload.get("entry") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            if isinstance(metadata, dict):
                number = str(metadata.get("phone_number_id"))
                tenant = settings.tenant_by_phone_number_id(number)
            else:
                number = str(entry.get("id"))
                tenant = settings.tenant_by_waba_id(number)
            if tenant is None:
                unknown.add(number)
            else:
                known.add(tenant.tenant_id)
    return known, unknown
