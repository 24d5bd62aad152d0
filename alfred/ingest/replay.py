"""Send quarantined events on to «alfred-ingest» once an operator says so."""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from sqlalchemy.orm import Session

from alfred.config import Settings
from alfred.db import INFRASTRUCTURE, session_scope
from alfred.ingest.service import append_inbound, ingest_body, store
from alfred.models import QuarantinedEvent
from alfred.models.base import utcnow
from alfred.streams import InboundEvent


def replay(event_id: int, *, settings: Settings, client: redis.Redis) -> str:
    """Replay one quarantined event; return what happened, also recorded on its row."""
    with session_scope(settings.database_url) as session:
        row = session.get(QuarantinedEvent, event_id)
        if row is None:
            return f"no quarantined event {event_id}"
        if row.replayed_at is not None:
            return f"already replayed: {row.replay_result}"
        result = _replay_envelope(session, row, client) if row.envelope else None
    if result is None:
        result = _replay_delivery(row, settings=settings, client=client)
    with session_scope(settings.database_url) as session:
        row = session.get(QuarantinedEvent, event_id)
        if not result.startswith("still"):
            row.replayed_at = utcnow()
        row.replay_result = result[:255]
    return result


def _replay_envelope(session: Session, row: QuarantinedEvent, client: redis.Redis) -> str:
    envelope = dict(row.envelope)
    event = InboundEvent(
        tenant_id=row.tenant_id,
        event=row.event or envelope.get("event"),
        id=envelope.get("id"),
        dedupe_key=row.dedupe_key or envelope.get("id"),
        timestamp=int(envelope.get("timestamp") or 0),
        envelope=envelope,
    )
    store(session, [event])
    session.commit()
    (appended,) = append_inbound(client, [event])
    return "appended" if appended else "duplicate: already in alfred-ingest"


def _replay_delivery(row: QuarantinedEvent, *, settings: Settings, client: redis.Redis) -> str:
    if not row.delivery:
        return "still held: nothing stored to replay"
    try:
        outcome = ingest_body(
            row.delivery,
            received_at=_epoch(row.received_at),
            settings=settings,
            client=client,
            check_skew=False,
        )
    except INFRASTRUCTURE:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug still there: say so, keep the row held
        return f"still {row.reason}: replay failed with {type(exc).__name__}: {exc}"
    if row.fingerprint in outcome.quarantined:
        return f"still {row.reason}: the event is rejected again"
    return f"replayed: {outcome.appended} appended, {outcome.duplicates} already there"


def _epoch(moment: datetime) -> float:
    # SQLite hands back naive datetimes; they were written in UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
