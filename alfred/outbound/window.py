"""The 24-hour customer-service window: free-form messages only to users who wrote lately.

The database (customer_windows) is the record. Redis holds a read-through copy, one key per
user name that exists exactly while the window is open (it expires when the window closes),
so the common case, an answer to someone who just wrote, costs the sender no database trip.
A missing key only means "ask the database": the copy can say "closed" wrongly, never "open".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alfred.db import session_scope
from alfred.ingest.storage import phone_key
from alfred.models import CustomerWindow

WINDOW = timedelta(hours=24)
WINDOW_S = int(WINDOW.total_seconds())
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


def needs_window(message: dict) -> bool:
    """Say whether Meta takes this message only inside the 24-hour window."""
    return message.get("type") not in TYPES_OUTSIDE_WINDOW


def window_key(tenant_id: str, user_key: str) -> str:
    """Name the Redis key that exists while the user's window with the tenant is open."""
    return f"alfred:window:{tenant_id}:{user_key}"


def remember_open(pipe, tenant_id: str, user_key: str, last_inbound: float) -> int:
    """Queue on `pipe` the commands that keep the window's key until it closes; count them.

    NX then EXPIREAT GT: a late, older message never shortens a window a newer one opened.
    """
    closes = int(last_inbound) + WINDOW_S
    key = window_key(tenant_id, user_key)
    pipe.set(key, int(last_inbound), exat=closes, nx=True)
    pipe.expireat(key, closes, gt=True)
    return 2


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


def open_in_record(
    database_url: str, client: redis.Redis, tenant_id: str, names: list[str], now: float
) -> bool:
    """Ask the database when Redis has no open window; copy an open one back to Redis."""
    with session_scope(database_url) as session:
        latest = last_inbound(session, tenant_id, names)
    if latest is None or datetime.fromtimestamp(now, UTC) - latest > WINDOW:
        return False
    pipe = client.pipeline(transaction=False)
    for name in names:
        remember_open(pipe, tenant_id, name, latest.timestamp())
    pipe.execute()
    return True
