"""The 24-hour customer-service window: free-form messages only to users who wrote lately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alfred.ingest.storage import phone_key
from alfred.models import CustomerWindow

WINDOW = timedelta(hours=24)
# Only templates may open a conversation (FACTS F11); everything else needs an open window.
TYPES_OUTSIDE_WINDOW = frozenset({"template"})


def recipient_keys(message: dict) -> list[str]:
    """Return the names under which the recipient's window may be stored."""
    keys = []
    if message.get("to"):
        keys.append(phone_key(str(message["to"])))
    if message.get("recipient"):
        keys.append(str(message["recipient"]))
    return keys


def last_inbound(session: Session, tenant_id: str, keys: list[str]) -> datetime | None:
    """Return when the user last wrote to the tenant, by phone number or BSUID."""
    if not keys:
        return None
    latest = session.scalar(
        select(func.max(CustomerWindow.last_inbound_at)).where(
            CustomerWindow.tenant_id == tenant_id, CustomerWindow.user_key.in_(keys)
        )
    )
    if latest is not None and latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)  # SQLite returns naive datetimes, written in UTC
    return latest


def window_closed(session: Session, tenant_id: str, message: dict, now: datetime) -> bool:
    """Say whether Meta would refuse this message with 131047 (re-engagement required)."""
    if message.get("type") in TYPES_OUTSIDE_WINDOW:
        return False
    latest = last_inbound(session, tenant_id, recipient_keys(message))
    return latest is None or now - latest > WINDOW
