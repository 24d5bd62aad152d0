"""Blank the personal data of messages past the hot and cold windows (PII_HOT/COLD_DAYS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import CursorResult, null

from alfred.config import Settings
from alfred.db import session_scope
from alfred.messages.store import EVERY_TENANT, scoped, scoped_update
from alfred.models import Message


def retention(settings: Settings) -> timedelta:
    """Return how long a message keeps its personal data: the hot days, then the cold days."""
    return timedelta(days=settings.pii_hot_days + settings.pii_cold_days)


def anonymise_messages(
    database_url: str, *, older_than: timedelta, dry_run: bool = False
) -> dict[str, int]:
    """Blank the personal data of messages older than `older_than`; return counts per tenant."""
    now = datetime.now(UTC)
    due = (Message.created_at < now - older_than, Message.anonymised_at.is_(None))
    with session_scope(database_url) as session:
        tenants = sorted(
            session.scalars(scoped(EVERY_TENANT, Message.tenant_id).where(*due).distinct())
        )
    counts: dict[str, int] = {}
    for tenant_id in tenants:
        # A transaction per tenant: one tenant's failure leaves the others done.
        with session_scope(database_url) as session:
            if dry_run:
                counts[tenant_id] = len(
                    session.scalars(scoped(tenant_id, Message.id).where(*due)).all()
                )
                continue
            result: CursorResult = session.execute(  # type: ignore[assignment]
                scoped_update(tenant_id)
                .where(*due)
                # null(): a JSON column would otherwise store the JSON text 'null'.
                .values(body=None, payload=null(), wa_id=None, user_id=None, username=None,
                        anonymised_at=now, updated_at=now)
            )  # fmt: skip
            counts[tenant_id] = result.rowcount
    return counts
