"""Per-tenant state: rotated tokens (encrypted) and each user's customer-service window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from alfred.models.base import Base, TenantScoped, lifecycle_indexes


class CustomerWindow(TenantScoped, Base):
    """When a user last wrote to a tenant; keyed by phone number and by BSUID alike."""

    __tablename__ = "customer_windows"
    __table_args__ = lifecycle_indexes("customer_windows", "last_inbound_at")

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_inbound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The lifecycle archive (lifecycle_archives.id) that holds this row's personal data.
    archive_id: Mapped[int | None] = mapped_column(Integer)


class TenantToken(TenantScoped, Base):
    """A Graph API token of a tenant, Fernet-encrypted at rest; the newest active one is used."""

    __tablename__ = "tenant_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(32), default="rotation")
    # When debug_token last called it valid with the messaging scope (None: never checked).
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
