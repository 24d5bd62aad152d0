"""Store inbound messages and statuses, advance outbound records, keep the 24-hour window."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import bindparam, literal_column, or_, select, update
from sqlalchemy.orm import Session

from alfred.db import dialect_insert, insert_ignoring_conflicts
from alfred.models import CustomerWindow, Message, MessageStatus
from alfred.models.base import utcnow
from alfred.models.messages import INBOUND, OUTBOUND
from alfred.whatsapp.inbound import InboundEvent

# A status only moves forward: a late `delivered` never undoes `read` (Meta does not
# promise order). `failed` ends a message that was not yet read.
STATUS_RANK = {
    "queued": 0,
    "accepted": 1,
    "sent": 2,
    "delivered": 3,
    "failed": 4,
    "read": 5,
    "played": 6,
}


def _at(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def _fits_integer_column(value: object) -> bool:
    # A code too large for the column would fail the whole batch's transaction.
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


def _clip(value: object, size: int) -> str | None:
    return str(value)[:size] if value is not None else None


def user_keys(envelope: dict) -> list[str]:
    """Return every name a user goes by: phone number (digits) and BSUID."""
    keys = []
    phone = envelope.get("from")
    if phone:
        keys.append(phone_key(phone)[:64])
    if envelope.get("user_id"):
        keys.append(envelope["user_id"])
    return keys


def phone_key(phone: str) -> str:
    """Normalise a phone number to its digits, as wa_id carries it."""
    return "".join(ch for ch in phone if ch.isdigit())


def store_events(session: Session, events: Sequence[InboundEvent]) -> None:
    """Write a delivery's messages, statuses and windows in the caller's transaction."""
    messages = [e for e in events if e.event == "message"]
    statuses = [e for e in events if e.event == "status"]
    if messages:
        _store_messages(session, messages)
        _open_windows(session, messages)
    if statuses:
        _store_statuses(session, statuses)


def _store_messages(session: Session, events: Iterable[InboundEvent]) -> None:
    # Rows in key order: concurrent batches then lock the same rows in the same order and
    # cannot deadlock one another.
    events = sorted(events, key=lambda e: (e.tenant_id, e.id))
    now = utcnow()
    rows = [
        {
            "tenant_id": e.tenant_id,
            "direction": INBOUND,
            "wamid": e.id,
            # Clipped to their columns: an odd value must not fail the whole batch.
            "wa_id": _clip(e.envelope.get("from"), 32),
            "user_id": _clip(e.envelope.get("user_id"), 64),
            "username": _clip(e.envelope.get("username"), 128),
            "type": str(e.envelope.get("type") or "unknown")[:32],
            "body": e.envelope.get("text"),
            "payload": e.envelope.get("raw"),
            "status": "received",
            "attempts": 0,
            "meta_timestamp": _at(e.timestamp),
            "created_at": now,
            "updated_at": now,
        }
        for e in events
    ]
    insert_ignoring_conflicts(session, Message.__table__, rows, ["tenant_id", "wamid"])


def _open_windows(session: Session, events: Iterable[InboundEvent]) -> None:
    latest: dict[tuple[str, str], int] = {}
    for e in events:
        for key in user_keys(e.envelope):
            slot = (e.tenant_id, key)
            latest[slot] = max(latest.get(slot, 0), e.timestamp)
    if not latest:
        return
    now = utcnow()
    rows = [
        {
            "tenant_id": tenant_id,
            "user_key": key,
            "last_inbound_at": _at(ts),
            "created_at": now,
            "updated_at": now,
        }
        for (tenant_id, key), ts in sorted(latest.items())
    ]
    table = CustomerWindow.__table__
    statement = dialect_insert(session)(table)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "user_key"],
        set_={
            "last_inbound_at": statement.excluded.last_inbound_at,
            "updated_at": statement.excluded.updated_at,
        },
        # An older message arriving late must not shorten the window.
        where=table.c.last_inbound_at < statement.excluded.last_inbound_at,
    )
    session.execute(statement, rows)


def _store_statuses(session: Session, events: Sequence[InboundEvent]) -> None:
    events = sorted(events, key=lambda e: (e.tenant_id, e.id, str(e.envelope.get("status"))))
    now = utcnow()
    rows = [
        {
            "tenant_id": e.tenant_id,
            "wamid": e.id,
            "status": str(e.envelope.get("status"))[:16],
            "meta_timestamp": _at(e.timestamp),
            "errors": e.envelope.get("errors"),
            "conversation": e.envelope.get("conversation"),
            "pricing": e.envelope.get("pricing"),
            "created_at": now,
            "updated_at": now,
        }
        for e in events
    ]
    insert_ignoring_conflicts(
        session, MessageStatus.__table__, rows, ["tenant_id", "wamid", "status"]
    )
    advance_outbound_statuses(session, events)


def advance_outbound_statuses(session: Session, events: Sequence[InboundEvent]) -> None:
    """Move our outbound records forward to each status, never backwards.

    One executemany per status, lowest rank first, so a batch holding `delivered` and
    `read` of one message ends at `read` whatever order Meta sent them in.
    """
    by_status: dict[str, list[dict]] = {}
    now = utcnow()
    for event in events:
        status = str(event.envelope.get("status"))
        if status not in STATUS_RANK:
            continue
        errors = event.envelope.get("errors") or [{}]
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
        code = first.get("code")
        by_status.setdefault(status, []).append(
            {
                "b_tenant": event.tenant_id,
                "b_wamid": event.id,
                "b_now": now,
                "b_code": code if _fits_integer_column(code) else None,
                "b_detail": str(first.get("title") or first.get("message") or "")[:2000] or None,
            }
        )
    table = Message.__table__
    for status in sorted(by_status, key=STATUS_RANK.__getitem__):
        lower = [name for name, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
        values: dict = {"status": status, "updated_at": bindparam("b_now")}
        if status == "failed":
            values.update(
                error_code=bindparam("b_code"),
                error_reason="failed_status",
                error_detail=bindparam("b_detail"),
            )
        statement = (
            update(table)
            .where(
                table.c.tenant_id == bindparam("b_tenant"),
                table.c.wamid == bindparam("b_wamid"),
                table.c.direction == OUTBOUND,
                # Constants, not an expanding IN: executemany cannot expand parameters.
                or_(*(table.c.status == literal_column(f"'{name}'") for name in lower)),
            )
            .values(**values)
        )
        session.execute(statement, by_status[status])


def outbound_for_wamid(session: Session, tenant_id: str, wamid: str) -> Message | None:
    """Find the outbound message a status is about."""
    return session.scalar(
        select(Message).where(
            Message.tenant_id == tenant_id, Message.wamid == wamid, Message.direction == OUTBOUND
        )
    )
