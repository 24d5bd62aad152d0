"""What each database table holds of a person, and how its hot copy is anonymised."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, null, select, update
from sqlalchemy.orm import Session

from alfred.models import (
    CustomerWindow,
    Message,
    MessageStatus,
    QuarantinedEvent,
    SendAttempt,
    StoredMedia,
)
from alfred.models.base import utcnow

Pseudonym = Callable[[object], str | None]


@dataclass(frozen=True)
class TableSource:
    """One table of personal rows: its age column, its key and its anonymisation."""

    name: str
    model: Any
    age: str
    key: str
    # Columns to replace in the hot copy, computed per row from its archived values.
    scrub: Callable[[dict, Pseudonym, datetime], dict] | None
    # Windows are worth nothing once closed for 30 days: archived, then deleted.
    delete_after_archive: bool = False
    # Rows that point at blobs (media): the blobs move to the cold area with the archive.
    blobs: bool = False

    def column(self, name: str):
        return getattr(self.model, name)

    def oldest_due(self, session: Session, tenant_id: str, cutoff: datetime) -> date | None:
        """Return the day of the oldest row of the tenant older than cutoff not yet archived."""
        oldest = session.scalar(
            select(func.min(self.column(self.age))).where(*self._due(tenant_id, cutoff))
        )
        return None if oldest is None else as_utc(oldest).date()

    def claim(
        self,
        session: Session,
        tenant_id: str,
        cutoff: datetime,
        day: date,
        archive_id: int,
        limit: int,
    ) -> int:
        """Mark up to `limit` due rows of one day as this archive's; return how many."""
        start = datetime.combine(day, time(), UTC)
        end = min(start + timedelta(days=1), cutoff)
        age, key = self.column(self.age), self.column(self.key)
        chosen = (
            select(key)
            .where(*self._due(tenant_id, end), age >= start)
            .order_by(age, key)
            .limit(limit)
        )
        result = session.execute(
            update(self.model)
            .where(self.model.tenant_id == tenant_id, key.in_(chosen.scalar_subquery()))
            .values(archive_id=archive_id)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    def records(self, session: Session, archive_id: int) -> list[dict]:
        """Return the rows of an archive, every column, in a stable order."""
        table = self.model.__table__
        rows = session.execute(
            select(table).where(table.c.archive_id == archive_id).order_by(table.c[self.key])
        ).mappings()
        return [{"table": self.name, **{k: _plain(v) for k, v in row.items()}} for row in rows]

    def changes(self, records: list[dict], pseudonym: Pseudonym) -> list[dict]:
        """Compute, from an archive's records, each row's anonymised columns (no database)."""
        if self.delete_after_archive:
            return []
        now = utcnow()
        return [{"_key": r[self.key], **self.scrub(r, pseudonym, now)} for r in records]

    def anonymise(
        self, session: Session, archive_id: int, changes: list[dict], cutoff: datetime
    ) -> int:
        """Write the anonymised columns of an archive's rows (or delete them); return how many."""
        table = self.model.__table__
        mine = table.c.archive_id == archive_id
        if self.delete_after_archive:
            result = session.execute(delete(table).where(mine, table.c[self.age] < cutoff))
            # A window written to again since it was claimed is live: it goes back to due.
            session.execute(update(table).where(mine).values(archive_id=None))
            return result.rowcount
        if not changes:
            return 0
        values = {name: bindparam(name) for name in changes[0] if name != "_key"}
        statement = (
            update(table)
            .where(table.c[self.key] == bindparam("_key"), mine)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.connection().execute(statement, changes)
        return len(changes)

    def _due(self, tenant_id: str, cutoff: datetime) -> tuple:
        return (
            self.model.tenant_id == tenant_id,
            self.model.archive_id.is_(None),
            self.column(self.age) < cutoff,
        )


def as_utc(value: datetime) -> datetime:
    """Read a stored time as UTC (SQLite hands back naive datetimes)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


# A wamid is the base64 of the user's phone number and a sequence (Meta's and the simulator's
# alike): it becomes a keyed hash too, the same in messages, statuses and attempts, so they join.
def _scrub_message(row: dict, p: Pseudonym, now: datetime) -> dict:
    return {
        "wamid": p(row["wamid"]),
        "wa_id": p(row["wa_id"]),
        "user_id": p(row["user_id"]),
        "username": p(row["username"]),
        "body": None,
        "payload": None,
        "error_detail": None,
        "archived_at": now,
        "anonymised_at": now,
        "updated_at": now,
    }


def _scrub_status(row: dict, p: Pseudonym, now: datetime) -> dict:
    # Meta's error details may quote the message; its code and title say what went wrong.
    errors = [
        {"code": e.get("code"), "title": e.get("title")}
        for e in row["errors"] or []
        if isinstance(e, dict)
    ]
    return {"wamid": p(row["wamid"]), "errors": errors or None, "updated_at": now}


def _scrub_attempt(row: dict, p: Pseudonym, now: datetime) -> dict:
    payload = row["payload"] if isinstance(row["payload"], dict) else {}
    kept = {
        "type": payload.get("type"),
        "to": p(payload.get("to")),
        "recipient": p(payload.get("recipient")),
    }
    return {
        "wamid": p(row["wamid"]),
        "payload": {k: v for k, v in kept.items() if v is not None} or None,
        "updated_at": now,
    }


def _scrub_quarantined(row: dict, p: Pseudonym, now: datetime) -> dict:
    return {
        # The detail may quote the rejected input; the reason says why it was held.
        "detail": f"{row['reason']} (detail removed by the PII lifecycle)",
        "dedupe_key": p(row["dedupe_key"]),
        "envelope": None,
        "delivery": None,
        "raw": None,
        "updated_at": now,
    }


def _scrub_media(row: dict, p: Pseudonym, now: datetime) -> dict:
    # The hot blob is gone (its cold copy's URL is in the archive); errors may quote Meta's
    # answer about the message. Kind, type, size and hash stay: counts and dedupe still work.
    return {"message_id": p(row["message_id"]), "blob_url": None, "errors": None, "updated_at": now}


SOURCES = (
    TableSource("messages", Message, "created_at", "id", _scrub_message),
    TableSource("message_statuses", MessageStatus, "created_at", "id", _scrub_status),
    TableSource("send_attempts", SendAttempt, "created_at", "id", _scrub_attempt),
    TableSource("quarantined_events", QuarantinedEvent, "created_at", "id", _scrub_quarantined),
    TableSource(
        "customer_windows",
        CustomerWindow,
        "last_inbound_at",
        "user_key",
        None,
        delete_after_archive=True,
    ),
    TableSource("media", StoredMedia, "created_at", "id", _scrub_media, blobs=True),
)
BY_NAME = {s.name: s for s in SOURCES}
# JSON columns take SQL NULL, not the JSON text 'null'.
JSON_NULL = null()
