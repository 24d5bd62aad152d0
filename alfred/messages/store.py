"""The messages table: one tenant-scoped base query, inbound rows, statuses, dead letters.

Every read and update of `messages` starts from `scoped()` (Superset's DAO `base_filter`):
it names the tenant, so no query forgets it. Reading across tenants is for operators only,
and says so: `scoped(EVERY_TENANT)`. The outbound trail's upserts are in messages/audit.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Select, Update, bindparam, literal_column, or_, select, update
from sqlalchemy.orm import Session

from alfred.db import insert_ignoring_conflicts, session_scope
from alfred.models import Message, MessageStatus
from alfred.models.base import utcnow
from alfred.models.messages import INBOUND, OUTBOUND
from alfred.streams import InboundEvent, final_key

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


class _EveryTenant:
    def __repr__(self) -> str:
        return "EVERY_TENANT"


# The operator's view across tenants (listing dead letters, the lifecycle's sweep).
EVERY_TENANT: Any = _EveryTenant()


def scoped(tenant_id: Any, *columns: Any) -> Select:
    """Start a SELECT on messages limited to one tenant (or, said aloud, EVERY_TENANT)."""
    query = select(*columns) if columns else select(Message)
    return query if tenant_id is EVERY_TENANT else query.where(Message.tenant_id == tenant_id)


def scoped_update(tenant_id: Any) -> Update:
    """Start an UPDATE of messages limited to one tenant (a str, or a bindparam of one).

    On the table, not the ORM class: a Core UPDATE, which executemany can run with bindparams.
    """
    table = Message.__table__
    return update(table).where(table.c.tenant_id == tenant_id)  # type: ignore[arg-type]


def _at(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def _fits_integer_column(value: object) -> bool:
    # A code too large for the column would fail the whole batch's transaction.
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


def _clip(value: object, size: int) -> str | None:
    return str(value)[:size] if value is not None else None


def store_events(session: Session, events: Sequence[InboundEvent]) -> None:
    """Write a delivery's messages and statuses in the caller's transaction."""
    messages = [e for e in events if e.event == "message"]
    statuses = [e for e in events if e.event == "status"]
    if messages:
        _store_messages(session, messages)
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
            scoped_update(bindparam("b_tenant"))
            .where(
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
        scoped(tenant_id).where(Message.wamid == wamid, Message.direction == OUTBOUND)
    )


def outbound_by_key(session: Session, tenant_id: str, key: str) -> Message | None:
    """Find an outbound message by its idempotency key."""
    return session.scalar(scoped(tenant_id).where(Message.idempotency_key == key))


def outbound_row(database_url: str, tenant_id: str, key: str) -> Message | None:
    """Return the outbound row of a message, or None (its own transaction)."""
    with session_scope(database_url) as session:
        return outbound_by_key(session, tenant_id, key)


def delivered(database_url: str, tenant_id: str, wamid: str) -> bool:
    """Say whether Meta reported a part delivered (or read), for ordered long replies."""
    with session_scope(database_url) as session:
        return (
            session.scalar(
                select(MessageStatus.id)
                .where(
                    MessageStatus.tenant_id == tenant_id,
                    MessageStatus.wamid == wamid,
                    MessageStatus.status.in_(["delivered", "read", "played"]),
                )
                .limit(1)
            )
            is not None
        )


def dead_letters(
    session: Session, *, tenant_id: str | None = None, limit: int = 50, key: str | None = None
) -> list[Message]:
    """List dead-lettered messages, newest first (every tenant's unless one is named)."""
    query = (
        scoped(tenant_id or EVERY_TENANT)
        .where(Message.direction == OUTBOUND, Message.status == "dead_lettered")
        .order_by(Message.id.desc())
        .limit(limit)
    )
    if key is not None:
        query = query.where(Message.idempotency_key == key)
    return list(session.scalars(query))


def reopen(session: Session, row: Message, client: redis.Redis) -> dict:
    """Put a dead letter back in the queue with fresh attempts; return its message.

    The decision kept in Redis goes too, or the sender would find the message decided.
    """
    row.status = "queued"
    row.attempts = 0
    row.updated_at = utcnow()
    client.delete(final_key(row.tenant_id, str(row.idempotency_key)))
    message = dict(row.payload or {})
    message.pop("attempts_made", None)  # fresh attempts
    return message


def dead_letter_again(session: Session, tenant_id: str, row_id: int, attempts: int) -> None:
    """Put a reopened message back as it was, dead-lettered with its attempts (not queued)."""
    session.execute(
        scoped_update(tenant_id)
        .where(Message.id == row_id)
        .values(status="dead_lettered", attempts=attempts)
    )
