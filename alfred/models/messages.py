"""Messages in both directions, their status history, and every send attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from alfred.models.base import Base, JSONType, TenantScoped, lifecycle_indexes

INBOUND = "inbound"
OUTBOUND = "outbound"


class Message(TenantScoped, Base):
    """One WhatsApp message, received or sent: the audit trail and the 30-day hot window."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "wamid"),
        UniqueConstraint("tenant_id", "idempotency_key"),
        *lifecycle_indexes("messages"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    wamid: Mapped[str | None] = mapped_column(String(512))
    # Outbound only: the orchestrator's key, or one fixed at enqueue; never derived from content.
    idempotency_key: Mapped[str | None] = mapped_column(String(512))
    wa_id: Mapped[str | None] = mapped_column(String(32), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    username: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    meta_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)


class MessageStatus(TenantScoped, Base):
    """One status webhook (sent, delivered, read, failed) of one outbound message."""

    __tablename__ = "message_statuses"
    __table_args__ = (
        UniqueConstraint("tenant_id", "wamid", "status"),
        *lifecycle_indexes("message_statuses"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wamid: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    meta_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    errors: Mapped[list | None] = mapped_column(JSONType)
    conversation: Mapped[dict | None] = mapped_column(JSONType)
    pricing: Mapped[dict | None] = mapped_column(JSONType)
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)


class SendAttempt(TenantScoped, Base):
    """One HTTP call to the Graph API (or a refusal before it), with what Meta answered."""

    __tablename__ = "send_attempts"
    __table_args__ = lifecycle_indexes("send_attempts")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), index=True)
    # One id per call, fixed before it is made: recording an accepted call twice (the audit
    # batch re-driven after a crash) writes one row.
    call_id: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(64))
    wamid: Mapped[str | None] = mapped_column(String(512))
    # The Graph request body with tokens redacted (tokens never travel in bodies, but be sure).
    payload: Mapped[dict | None] = mapped_column(JSONType)
    duration_ms: Mapped[float | None] = mapped_column()
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)
