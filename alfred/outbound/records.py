"""The outbound audit trail: one row a message, one row an attempt, and send_failed events."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import case, func, literal_column, null, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from alfred.db import session_scope
from alfred.ingest.envelope import send_failed_envelope
from alfred.ingest.service import append_events
from alfred.models import Message, MessageStatus, SendAttempt
from alfred.models.base import utcnow
from alfred.models.messages import OUTBOUND
from alfred.streams import final_key
from alfred.whatsapp.errors import GraphError
from alfred.whatsapp.graph import SendResult
from alfred.whatsapp.inbound import InboundEvent

_SECRET_KEYS = {"access_token", "token", "authorization", "client_secret", "password", "app_secret"}


def redact(value: Any) -> Any:
    """Return a copy with every token-like value replaced, for storing payloads."""
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in _SECRET_KEYS else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _body_text(message: dict) -> str | None:
    kind = message.get("type")
    obj = message.get(kind) if isinstance(kind, str) else None
    if not isinstance(obj, dict):
        return None
    text = obj.get("body") or obj.get("caption")
    return str(text) if text is not None else None


# Outcomes that end a message; a send task finding one does nothing more.
FINAL = frozenset({"failed", "invalid", "dead_lettered"})
# Statuses a success may overwrite; later ones (sent, delivered, read, failed) came from Meta.
_OPEN = ("queued", "accepted")


def _row(tenant_id: str, message: dict, **values) -> dict:
    """Return the messages row of an outbound message, for the INSERT of an upsert."""
    now = utcnow()
    key = str(message.get("idempotency_key"))
    return {
        "tenant_id": tenant_id,
        "direction": OUTBOUND,
        "idempotency_key": key,
        "wa_id": str(message.get("to"))[:32] if message.get("to") else None,
        "user_id": str(message.get("recipient"))[:64] if message.get("recipient") else None,
        "type": str(message.get("type") or "unknown")[:32],
        "body": _body_text(message),
        "payload": redact(message),
        "status": "queued",
        "attempts": 0,
        "wamid": None,
        "error_code": None,
        "error_reason": None,
        "error_detail": None,
        "created_at": now,
        "updated_at": now,
        **values,
    }


@lru_cache(maxsize=4)
def _upserts(dialect: str) -> dict[str, Any]:
    """Build, once per dialect, the upserts of an outbound row, each one statement.

    The row is written when the message's first outcome is known, not before the call: a
    send then costs one transaction. Each statement is built once so SQLAlchemy's compiled
    cache serves it; status lists are constants, not expanding IN parameters.
    """
    table = Message.__table__
    c = table.c
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    still_open = or_(*(c.status == literal_column(f"'{name}'") for name in _OPEN))

    def upsert(returning: bool = False, **set_):
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "idempotency_key"],
            set_={
                key: value(statement.excluded) if callable(value) else value
                for key, value in {**set_, "updated_at": lambda x: x.updated_at}.items()
            },
        )
        return statement.returning(c.attempts) if returning else statement

    def if_open(then, otherwise):
        return case((still_open, then), else_=otherwise)

    accepted = {
        "wamid": lambda x: func.coalesce(c.wamid, x.wamid),
        "status": if_open(literal_column("'accepted'"), c.status),
        "error_code": if_open(null(), c.error_code),
        "error_reason": if_open(null(), c.error_reason),
        "error_detail": if_open(null(), c.error_detail),
    }
    return {
        # Meta accepted one more call: count it, keep the first part's wamid.
        "accepted": upsert(True, attempts=c.attempts + 1, **accepted),
        # Meta accepted it, learnt from a sent mark (a status webhook, or a sender that died
        # before writing this row): record the acceptance, not a call.
        "seen_accepted": upsert(False, **accepted),
        "failed_attempt": upsert(
            True,
            attempts=c.attempts + 1,
            error_code=lambda x: x.error_code,
            error_reason=lambda x: x.error_reason,
            error_detail=lambda x: x.error_detail,
        ),
        "final": upsert(
            False,
            status=lambda x: x.status,
            error_code=lambda x: x.error_code,
            error_reason=lambda x: x.error_reason,
            error_detail=lambda x: x.error_detail,
        ),
    }


def _upsert(session: Session, name: str, row: dict) -> int | None:
    """Run one of the upserts; return the attempts so far where it counts them."""
    result = session.execute(_upserts(session.get_bind().dialect.name)[name], row)
    return result.scalar_one() if name in _COUNTING else None


_COUNTING = frozenset({"accepted", "failed_attempt"})


def _attempt_row(
    tenant_id: str, message: dict, body: dict, attempt: int, elapsed: float, **values
) -> dict:
    now = utcnow()
    return {
        "tenant_id": tenant_id,
        "idempotency_key": str(message.get("idempotency_key")),
        "attempt": attempt,
        "payload": redact(body),
        "duration_ms": round(elapsed * 1000, 2),
        "http_status": None,
        "error_code": None,
        "error_reason": None,
        "wamid": None,
        "created_at": now,
        "updated_at": now,
        **values,
    }


_INSERT_ATTEMPT = SendAttempt.__table__.insert()


def attempt_succeeded(
    session: Session,
    tenant_id: str,
    message: dict,
    body: dict,
    result: SendResult,
    elapsed: float,
) -> int:
    """Record Meta's acceptance of a call (a message, or one part of a long text).

    Return the message's attempts so far, this one included.
    """
    attempt = _upsert(
        session,
        "accepted",
        _row(tenant_id, message, status="accepted", attempts=1, wamid=result.wamid),
    )
    session.execute(
        _INSERT_ATTEMPT,
        _attempt_row(
            tenant_id,
            message,
            body,
            attempt,
            elapsed,
            http_status=result.http_status,
            wamid=result.wamid,
        ),
    )
    return int(attempt)


def accepted_before(session: Session, tenant_id: str, message: dict, wamid: str) -> None:
    """Make sure the row shows an acceptance known only from the sent mark."""
    _upsert(session, "seen_accepted", _row(tenant_id, message, status="accepted", wamid=wamid))


def attempt_failed(
    session: Session,
    tenant_id: str,
    message: dict,
    body: dict,
    exc: GraphError,
    elapsed: float,
) -> int:
    """Record a failed call with Meta's status and code; return the attempts so far."""
    errors = {
        "error_code": exc.code if isinstance(exc.code, int) else None,
        "error_reason": exc.reason[:64],
        "error_detail": str(exc)[:2000],
    }
    attempt = _upsert(session, "failed_attempt", _row(tenant_id, message, attempts=1, **errors))
    session.execute(
        _INSERT_ATTEMPT,
        _attempt_row(
            tenant_id,
            message,
            body,
            attempt,
            elapsed,
            http_status=exc.http_status,
            error_code=errors["error_code"],
            error_reason=errors["error_reason"],
        ),
    )
    return int(attempt)


def mark_failed(
    session: Session, tenant_id: str, message: dict, *, reason: str, errors: list[dict], status: str
) -> None:
    """Close a message as failed, invalid or dead-lettered, with the reason."""
    first = errors[0] if errors else {}
    code = first.get("code") if isinstance(first.get("code"), int) else None
    _upsert(
        session,
        "final",
        _row(
            tenant_id,
            message,
            status=status,
            error_reason=reason[:64],
            error_code=code,
            error_detail=str(first.get("message") or first.get("title") or "")[:2000],
        ),
    )


def emit_send_failed(
    client: redis.Redis,
    tenant_id: str,
    phone_number_id: str | None,
    message: dict,
    *,
    errors: list[dict],
    reason: str,
) -> None:
    """Tell the orchestrator, once per message, that it will not be delivered."""
    key = str(message.get("idempotency_key"))
    envelope = send_failed_envelope(
        redact(message),
        tenant_id=tenant_id,
        idempotency_key=key,
        phone_number_id=phone_number_id,
        errors=errors,
        failed_at=time.time(),
    )
    envelope["reason"] = reason
    append_events(
        client,
        [
            InboundEvent(
                tenant_id=tenant_id,
                event="send_failed",
                id=key,
                dedupe_key=key,
                timestamp=envelope["timestamp"],
                envelope=envelope,
            )
        ],
    )


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
    session: Session, *, tenant_id: str | None = None, limit: int = 50
) -> list[Message]:
    """List dead-lettered messages, newest first."""
    query = (
        select(Message)
        .where(Message.direction == OUTBOUND, Message.status == "dead_lettered")
        .order_by(Message.id.desc())
        .limit(limit)
    )
    if tenant_id:
        query = query.where(Message.tenant_id == tenant_id)
    return list(session.scalars(query))


def reopen(session: Session, row: Message, client: redis.Redis) -> dict:
    """Put a dead letter back in the queue with fresh attempts; return its message.

    The decision kept in Redis goes too, or the sender would find the message decided.
    """
    row.status = "queued"
    row.attempts = 0
    row.updated_at = utcnow()
    client.delete(final_key(row.tenant_id, str(row.idempotency_key)))
    return dict(row.payload or {})
