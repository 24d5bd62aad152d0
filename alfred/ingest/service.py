"""Turn one journaled delivery into stream entries, stored rows and quarantined leftovers."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import redis

from alfred import metrics
from alfred.config import Settings
from alfred.db import session_scope
from alfred.ingest import quarantine
from alfred.ingest.receive import decode_record, ingest_journal
from alfred.ingest.send_failed import send_failed_for_status
from alfred.ingest.storage import store_events
from alfred.streams import SENT_TTL_S, IngestStream, sent_key, to_result
from alfred.whatsapp.inbound import InboundEvent, RejectedEvent, normalise_delivery

log = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    """What became of one delivery."""

    appended: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)  # fingerprints
    already_done: bool = False


def process_delivery(delivery_id: str, *, settings: Settings, client: redis.Redis) -> IngestOutcome:
    """Ingest a journaled delivery, then forget it; a second run finds nothing to do."""
    journal = ingest_journal(client)
    record = journal.get(delivery_id)
    if record is None:
        return IngestOutcome(already_done=True)
    received_at, body = decode_record(record)
    outcome = ingest_body(body, received_at=received_at, settings=settings, client=client)
    journal.done(delivery_id)
    return outcome


def ingest_body(
    body: bytes | str,
    *,
    received_at: float,
    settings: Settings,
    client: redis.Redis,
    check_skew: bool = True,
) -> IngestOutcome:
    """Normalise a delivery, store it, quarantine what cannot go on, append the rest once."""
    outcome = IngestOutcome()
    try:
        payload = json.loads(body)
    except ValueError as exc:
        with session_scope(settings.database_url) as session:
            fingerprint = quarantine.hold_unparseable(
                session, body, detail=f"body is not JSON: {exc}", received_at=received_at
            )
        outcome.quarantined.append(fingerprint)
        return outcome

    results = normalise_delivery(
        payload,
        tenant_for_phone=lambda pid: _tenant_id(settings.tenant_by_phone_number_id(pid)),
        tenant_for_waba=lambda waba: _tenant_id(settings.tenant_by_waba_id(waba)),
        received_at=received_at,
    )
    max_skew = settings.webhook_max_skew_s if check_skew else None
    events, stale, rejected = _partition(results, received_at, max_skew)

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    with session_scope(settings.database_url) as session:
        # Rows first: the orchestrator may answer the instant an event is in the stream,
        # and its send needs the customer-service window this opens.
        store_events(session, events)
        failures = [send_failed_for_status(session, e) for e in events if _is_failed(e)]
        for event in stale:
            outcome.quarantined.append(
                quarantine.hold_stale(session, event, received_at=received_at, max_skew=max_skew)
            )
        for rejection in rejected:
            outcome.quarantined.append(
                quarantine.hold_rejected(session, rejection, delivery=text, received_at=received_at)
            )

    remember_accepted_sends(client, events)
    appended = append_events(client, events + failures)
    for event, added in zip(events + failures, appended, strict=True):
        outcome.appended += added
        outcome.duplicates += not added
        metrics.INGEST_EVENTS.labels(
            event.tenant_id, event.event, "appended" if added else "duplicate"
        ).inc()
    if outcome.appended:
        metrics.INGEST_LATENCY.observe(max(0.0, time.time() - received_at))
    return outcome


def append_events(client: redis.Redis, events: list[InboundEvent]) -> list[bool]:
    """Append each event once, in order, in one round trip; return which were new."""
    if not events:
        return []
    stream = IngestStream(client)
    pipe = client.pipeline(transaction=False)
    for event in events:
        stream.append_once(
            tenant_id=event.tenant_id,
            event=event.event,
            dedupe_key=event.dedupe_key,
            payload=json.dumps(event.envelope, ensure_ascii=False, separators=(",", ":")),
            client=pipe,
        )
    return [to_result(raw).appended for raw in pipe.execute()]


def remember_accepted_sends(client: redis.Redis, events: list[InboundEvent]) -> None:
    """Mark our messages that Meta reports on as sent, keyed as the sender keys them.

    A sender killed after Meta accepted a message but before it recorded the wamid leaves
    no trace; the status webhook, which echoes the key in biz_opaque_callback_data, does.
    The re-driven send then finds the key sent and does not send it twice.
    """
    pipe = None
    for event in events:
        key = event.envelope.get("biz_opaque_callback_data") if event.event == "status" else None
        if key:
            pipe = pipe or client.pipeline(transaction=False)
            pipe.set(sent_key(event.tenant_id, str(key)), event.id, nx=True, ex=SENT_TTL_S)
    if pipe is not None:
        pipe.execute()


def _tenant_id(tenant) -> str | None:
    return tenant.tenant_id if tenant is not None else None


def _is_failed(event: InboundEvent) -> bool:
    return event.event == "status" and event.envelope.get("status") == "failed"


def _partition(results, received_at: float, max_skew: float | None):
    events: list[InboundEvent] = []
    stale: list[InboundEvent] = []
    rejected: list[RejectedEvent] = []
    for result in results:
        if isinstance(result, RejectedEvent):
            rejected.append(result)
        elif max_skew is not None and abs(received_at - result.timestamp) > max_skew:
            stale.append(result)
        else:
            events.append(result)
    return events, stale, rejected
