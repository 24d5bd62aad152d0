"""The outbound audit trail: one row a message, one row an attempt, and send_failed events."""

from __future__ import annotations

import time
from typing import Any

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alfred.db import insert_ignoring_conflicts, session_scope
from alfred.ingest.envelope import send_failed_envelope
from alfred.ingest.service import append_events
from alfred.models import Message, MessageStatus, SendAttempt
from alfred.models.base import utcnow
from alfred.models.messages import OUTBOUND
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


def ensure_outbound(session: Session, tenant_id: str, key: str, message: dict) -> tuple[int, str]:
    """Create the message's row if new; return its attempts so far and its status."""
    now = utcnow()
    insert_ignoring_conflicts(
        session,
        Message.__table__,
        [
            {
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
                "created_at": now,
                "updated_at": now,
            }
        ],
        ["tenant_id", "idempotency_key"],
    )
    found = session.execute(
        select(Message.attempts, Message.status).where(
            Message.tenant_id == tenant_id, Message.idempotency_key == key
        )
    ).one()
    return int(found.attempts or 0), str(found.status)


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
        "created_at": now,
        "updated_at": now,
        **values,
    }


def attempt_succeeded(
    session: Session,
    tenant_id: str,
    message: dict,
    body: dict,
    result: SendResult,
    attempt: int,
    elapsed: float,
    *,
    first: bool,
) -> None:
    """Record Meta's acceptance of a send (or of one part of a long text)."""
    session.execute(
        SendAttempt.__table__.insert().values(
            _attempt_row(
                tenant_id,
                message,
                body,
                attempt,
                elapsed,
                http_status=result.http_status,
                wamid=result.wamid,
            )
        )
    )
    values: dict[str, Any] = {
        "attempts": attempt,
        "updated_at": utcnow(),
        "error_code": None,
        "error_reason": None,
        "error_detail": None,
    }
    if first:
        values["wamid"] = result.wamid
        values["status"] = "accepted"
    session.execute(
        update(Message)
        .where(
            Message.tenant_id == tenant_id,
            Message.idempotency_key == str(message.get("idempotency_key")),
            Message.status.in_(["queued", "accepted"]),
        )
        .values(**values)
    )


def attempt_failed(
    session: Session,
    tenant_id: str,
    message: dict,
    body: dict,
    exc: GraphError,
    attempt: int,
    elapsed: float,
) -> None:
    """Record a failed call with Meta's status and code."""
    session.execute(
        SendAttempt.__table__.insert().values(
            _attempt_row(
                tenant_id,
                message,
                body,
                attempt,
                elapsed,
                http_status=exc.http_status,
                error_code=exc.code,
                error_reason=exc.reason,
            )
        )
    )
    session.execute(
        update(Message)
        .where(
            Message.tenant_id == tenant_id,
            Message.idempotency_key == str(message.get("idempotency_key")),
        )
        .values(
            attempts=attempt,
            error_code=exc.code,
            error_reason=exc.reason,
            error_detail=str(exc)[:2000],
            updated_at=utcnow(),
        )
    )


def mark_failed(
    session: Session, tenant_id: str, message: dict, *, reason: str, errors: list[dict], status: str
) -> None:
    """Close a message as failed, invalid or dead-lettered, with the reason."""
    first = errors[0] if errors else {}
    code = first.get("code") if isinstance(first.get("code"), int) else None
    session.execute(
        update(Message)
        .where(
            Message.tenant_id == tenant_id,
            Message.idempotency_key == str(message.get("idempotency_key")),
        )
        .values(
            status=status,
            error_reason=reason[:64],
            error_code=code,
            error_detail=str(first.get("message") or first.get("title") or "")[:2000],
            updated_at=utcnow(),
        )
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


def reopen(session: Session, row: Message) -> dict:
    """Put a dead letter back in the queue with fresh attempts; return its message."""
    row.status = "queued"
    row.attempts = 0
    row.updated_at = utcnow()
    return dict(row.payload or {})
