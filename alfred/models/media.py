"""Inbound media fetched from Meta: where the bytes went, or why they could not be kept."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from alfred.models.base import Base, TenantScoped, lifecycle_indexes


class StoredMedia(TenantScoped, Base):
    """One media object of an inbound message, written once its outcome is final."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("tenant_id", "media_id"), *lifecycle_indexes("media"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # image, audio, video, document, sticker
    status: Mapped[str] = mapped_column(String(16))  # stored | failed
    mime_type: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    blob_url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(64))
    errors: Mapped[list | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)
