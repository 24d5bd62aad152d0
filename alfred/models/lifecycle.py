"""The PII lifecycle's ledger: one row per cold archive, written before the archive is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from alfred.models.base import Base, TenantScoped

# claimed: rows are marked with the archive's id, nothing written yet; verified: the archive
# was read back, counted and hashed; done: the hot copy is anonymised; expired: the archive
# was deleted after the cold window.
CLAIMED, VERIFIED, DONE, EXPIRED = "claimed", "verified", "done", "expired"


class LifecycleArchive(TenantScoped, Base):
    """One compressed JSON Lines archive of one tenant, one source and one day."""

    __tablename__ = "lifecycle_archives"
    __table_args__ = (UniqueConstraint("key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    day: Mapped[str] = mapped_column(String(10), index=True)
    key: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), index=True)
    records: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # Streams have no archive_id column: an archive owns its tenant's entries in this range.
    first_entry: Mapped[str | None] = mapped_column(String(32))
    last_entry: Mapped[str | None] = mapped_column(String(32))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
