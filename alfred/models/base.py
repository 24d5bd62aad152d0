"""The declarative base and the columns every table shares."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Index, MetaData, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints keep Alembic migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def lifecycle_indexes(table: str, column: str = "created_at") -> tuple[Index, Index]:
    """Index rows not yet archived by age (the next batch), and archived ones by archive."""
    due, held = text("archive_id IS NULL"), text("archive_id IS NOT NULL")
    return (
        Index(f"ix_{table}_lifecycle_due", "tenant_id", column,
              postgresql_where=due, sqlite_where=due),
        Index(f"ix_{table}_archive_id", "archive_id", postgresql_where=held, sqlite_where=held),
    )  # fmt: skip


class TenantScoped:
    """Columns shared by every row: whose it is, and when it was written."""

    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
