"""The outbound audit trail: one row a message, one row an attempt, each written as an upsert."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import case, func, literal_column, null, or_, select
from sqlalchemy.orm import Session

from alfred.db import insert_for
from alfred.messages.store import advance_outbound_statuses
from alfred.models import Message, MessageStatus, SendAttempt
from alfred.models.base import utcnow
from alfred.models.messages import OUTBOUND
from alfred.streams import InboundEvent
from alfred.whatsapp.errors import GraphError
from alfred.whatsapp.graph import SendResult

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
def _statements(dialect: str) -> dict[str, Any]:
    """Build, once per dialect, the statements that write outbound rows.

    Every write is an upsert of the message's row, so the row appears with its first outcome
    and no send pays a trip before the call. Each is idempotent: the attempts so far come
    with the call (the task carries them), and the row keeps the greatest count seen, so a
    batch recorded twice counts nothing twice. Built once so SQLAlchemy's compiled cache
    serves them; status lists are constants, not expanding IN parameters.
    """
    table = Message.__table__
    c = table.c
    insert = insert_for(dialect)
    # SQLite's two-argument max() is scalar, PostgreSQL's greatest() its counterpart.
    greatest = func.greatest if dialect == "postgresql" else func.max
    still_open = or_(*(c.status == literal_column(f"'{name}'") for name in _OPEN))

    def upsert(**set_):
        statement = insert(table)
        return statement.on_conflict_do_update(
            index_elements=["tenant_id", "idempotency_key"],
            set_={
                key: value(statement.excluded) if callable(value) else value
                for key, value in {**set_, "updated_at": lambda x: x.updated_at}.items()
            },
        )

    def if_open(then, otherwise):
        return case((still_open, then), else_=otherwise)

    accepted = {
        "wamid": lambda x: func.coalesce(c.wamid, x.wamid),
        "status": if_open(literal_column("'accepted'"), c.status),
        "error_code": if_open(null(), c.error_code),
        "error_reason": if_open(null(), c.error_reason),
        "error_detail": if_open(null(), c.error_detail),
    }
    attempts = {"attempts": lambda x: greatest(c.attempts, x.attempts)}
    errors = {
        "error_code": lambda x: x.error_code,
        "error_reason": lambda x: x.error_reason,
        "error_detail": lambda x: x.error_detail,
    }
    attempt_insert = insert(SendAttempt.__table__)
    return {
        # Meta accepted a call: keep the first part's wamid.
        "accepted": upsert(**attempts, **accepted),
        # Meta accepted it, learnt from a sent mark (a status webhook, or a sender that died
        # before its acceptance was recorded): record the acceptance, not a call.
        "seen_accepted": upsert(**accepted),
        "failed_attempt": upsert(**attempts, **errors),
        "final": upsert(status=lambda x: x.status, **errors),
        "attempt": attempt_insert.on_conflict_do_nothing(index_elements=["call_id"]),
    }


def _execute(session: Session, name: str, params: dict | list[dict]) -> None:
    session.execute(_statements(session.get_bind().dialect.name)[name], params)


def _attempt_row(
    tenant_id: str, message: dict, body: dict, attempt: int, elapsed: float, **values
) -> dict:
    now = utcnow()
    return {
        "tenant_id": tenant_id,
        "idempotency_key": str(message.get("idempotency_key")),
        "call_id": None,
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


def accepted_call(
    tenant_id: str,
    message: dict,
    body: dict,
    result: SendResult,
    *,
    attempt: int,
    elapsed: float,
    call_id: str,
) -> dict:
    """Describe an accepted call as the audit batch stores it (JSON, until it is written)."""
    return {
        "tenant_id": tenant_id,
        "message": redact(message),
        "body": redact(body),
        "wamid": result.wamid,
        "http_status": result.http_status,
        "attempt": attempt,
        "elapsed": elapsed,
        "call_id": call_id,
        "at": time.time(),
    }


def write_accepted(session: Session, calls: list[dict]) -> None:
    """Write a batch of accepted calls: each message's row, each call's row, known statuses.

    Idempotent, so a batch re-driven after a crash writes nothing twice. Rows go in key
    order, so two writers never wait on each other's locks in opposite orders.
    """
    if not calls:
        return
    calls = sorted(calls, key=lambda c: (c["tenant_id"], str(c["message"].get("idempotency_key"))))
    messages: dict[tuple[str, str], dict] = {}
    for call in calls:
        row = _row(
            call["tenant_id"],
            call["message"],
            status="accepted",
            attempts=call["attempt"],
            wamid=call["wamid"],
        )
        slot = (row["tenant_id"], row["idempotency_key"])
        if slot in messages:  # parts of one long text: the first part's wamid, the most calls
            row = {**messages[slot], "attempts": max(messages[slot]["attempts"], row["attempts"])}
        messages[slot] = row
    _execute(session, "accepted", list(messages.values()))
    _execute(
        session,
        "attempt",
        [
            _attempt_row(
                call["tenant_id"],
                call["message"],
                call["body"],
                call["attempt"],
                call["elapsed"],
                http_status=call["http_status"],
                wamid=call["wamid"],
                call_id=call["call_id"],
                created_at=datetime.fromtimestamp(call["at"], UTC),
            )
            for call in calls
        ],
    )
    _replay_statuses(session, {(c["tenant_id"], c["wamid"]) for c in calls})


def _replay_statuses(session: Session, wamids: set[tuple[str, str]]) -> None:
    """Apply statuses Meta reported before the acceptance was written (a busy batch)."""
    by_tenant: dict[str, list[str]] = {}
    for tenant_id, wamid in wamids:
        by_tenant.setdefault(tenant_id, []).append(wamid)
    events = []
    for tenant_id, ids in by_tenant.items():
        for status in session.execute(
            select(MessageStatus.wamid, MessageStatus.status, MessageStatus.errors).where(
                MessageStatus.tenant_id == tenant_id, MessageStatus.wamid.in_(ids)
            )
        ):
            envelope = {"status": status.status, "errors": status.errors}
            events.append(InboundEvent(tenant_id, "status", status.wamid, "", 0, envelope))
    if events:
        advance_outbound_statuses(session, events)


def accepted_before(session: Session, tenant_id: str, message: dict, wamid: str) -> None:
    """Make sure the row shows an acceptance known only from the sent mark."""
    _execute(session, "seen_accepted", _row(tenant_id, message, status="accepted", wamid=wamid))


def attempt_failed(
    session: Session,
    tenant_id: str,
    message: dict,
    body: dict,
    exc: GraphError,
    *,
    attempt: int,
    elapsed: float,
    call_id: str,
) -> None:
    """Record a failed call with Meta's status and code."""
    errors = {
        "error_code": exc.code if isinstance(exc.code, int) else None,
        "error_reason": exc.reason[:64],
        "error_detail": str(exc)[:2000],
    }
    _execute(session, "failed_attempt", _row(tenant_id, message, attempts=attempt, **errors))
    _execute(
        session,
        "attempt",
        _attempt_row(
            tenant_id,
            message,
            body,
            attempt,
            elapsed,
            http_status=exc.http_status,
            error_code=errors["error_code"],
            error_reason=errors["error_reason"],
            call_id=call_id,
        ),
    )


def mark_failed(
    session: Session, tenant_id: str, message: dict, *, reason: str, errors: list[dict], status: str
) -> None:
    """Close a message as failed, invalid or dead-lettered, with the reason."""
    first = errors[0] if errors else {}
    code = first.get("code") if isinstance(first.get("code"), int) else None
    _execute(
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
