"""Inbound events held back with the reason, until an operator replays them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from alfred.models.base import Base, JSONType, TenantScoped, lifecycle_indexes


class QuarantinedEvent(TenantScoped, Base):
    """An event that did not go to «alfred-ingest»: stale, for an unknown number, or invalid."""

    __tablename__ = "quarantined_events"
    __table_args__ = lifecycle_indexes("quarantined_events")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Unique per rejected piece, so Meta's redeliveries do not pile up copies.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text)
    event: Mapped[str | None] = mapped_column(String(64))
    dedupe_key: Mapped[str | None] = mapped_column(String(600))
    # A ready envelope (stale events) or the whole delivery (the rest), whichever replay needs.
    envelope: Mapped[dict | None] = mapped_column(JSONType)
    delivery: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict | list | str | None] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replay_result: Mapped[str | None] = mapped_column(String(255))
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)
