"""Hold back events that must not reach «alfred-ingest», with the reason; list and replay them."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from alfred import metrics
from alfred.db import insert_ignoring_conflicts, session_scope
from alfred.ingest.limits import storable_copy
from alfred.ingest.normalise import RejectedEvent
from alfred.models import QuarantinedEvent
from alfred.models.base import utcnow
from alfred.streams import InboundEvent

log = logging.getLogger(__name__)

STALE = "stale_timestamp"
FAILED = "ingest_failed"


def fingerprint(*parts: object) -> str:
    """Return a stable digest, so Meta's redeliveries do not pile up copies."""
    canonical = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _hold(session: Session, *, print_: str, reason: str, detail: str, **values) -> str:
    now = utcnow()
    # What was held back may be held back for what it holds (a lone surrogate, a NUL): the row
    # spells such characters out as escapes, so the database takes it (limits.storable_copy).
    fields = {
        "fingerprint": print_,
        "reason": reason,
        "detail": detail[:4000],
        "tenant_id": values.pop("tenant_id", None) or "",
        **values,
    }
    row = {key: storable_copy(value) for key, value in fields.items()}
    row.update(created_at=now, updated_at=now)
    insert_ignoring_conflicts(session, QuarantinedEvent.__table__, [row], ["fingerprint"])
    metrics.QUARANTINED.labels(reason).inc()
    log.warning(
        "ingest.quarantined",
        extra={"reason": reason, "detail": detail[:300], "tenant_id": row["tenant_id"]},
    )
    return print_


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def hold_refused(
    session: Session, body: bytes | str, *, reason: str, detail: str, received_at: float
) -> str:
    """Keep a signed body the edge refused (limits.Refused: not JSON, too deep, too many)."""
    return _hold_delivery(session, reason, body, detail=detail, received_at=received_at)


def hold_failed(session: Session, body: bytes | str, *, detail: str, received_at: float) -> str:
    """Keep a delivery that failed again and again (a bug, not bad input), for replay."""
    return _hold_delivery(session, FAILED, body, detail=detail, received_at=received_at)


def _hold_delivery(
    session: Session, reason: str, body: bytes | str, *, detail: str, received_at: float
) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return _hold(
        session,
        print_=fingerprint(reason, text),
        reason=reason,
        detail=detail,
        delivery=text,
        received_at=_at(received_at),
    )


def hold_stale(
    session: Session, event: InboundEvent, *, received_at: float, max_skew: float | None
) -> str:
    """Keep an event whose timestamp is too far from its arrival, ready to replay as it is."""
    skew = received_at - event.timestamp
    return _hold(
        session,
        print_=fingerprint(STALE, event.tenant_id, event.event, event.dedupe_key),
        reason=STALE,
        detail=f"timestamp {event.timestamp} is {skew:.1f} s from arrival; limit {max_skew} s",
        tenant_id=event.tenant_id,
        event=event.event,
        dedupe_key=event.dedupe_key,
        envelope=event.envelope,
        raw=event.envelope.get("raw"),
        received_at=_at(received_at),
    )


def hold_rejected(
    session: Session, rejection: RejectedEvent, *, delivery: str, received_at: float
) -> str:
    """Keep a piece that could not become an event, with its whole delivery for replay."""
    return _hold(
        session,
        print_=fingerprint(rejection.reason, rejection.tenant_id, rejection.raw),
        reason=rejection.reason,
        detail=rejection.detail,
        tenant_id=rejection.tenant_id,
        raw=rejection.raw,
        delivery=delivery,
        received_at=_at(received_at),
    )


def list_held(
    session: Session,
    *,
    reason: str | None = None,
    tenant_id: str | None = None,
    include_replayed: bool = False,
    limit: int = 50,
) -> list[QuarantinedEvent]:
    """Return quarantined events, newest first."""
    query = select(QuarantinedEvent).order_by(QuarantinedEvent.id.desc()).limit(limit)
    if reason:
        query = query.where(QuarantinedEvent.reason == reason)
    if tenant_id:
        query = query.where(QuarantinedEvent.tenant_id == tenant_id)
    if not include_replayed:
        query = query.where(QuarantinedEvent.replayed_at.is_(None))
    return list(session.scalars(query))


def held(database_url: str, **filters) -> list[QuarantinedEvent]:
    """Return quarantined events, newest first, in a transaction of their own (list_held)."""
    with session_scope(database_url) as session:
        return list_held(session, **filters)
