"""The 24-hour customer-service window: free-form messages only to users who wrote lately.

Written on ingest (open_windows in the batch's transaction, remember_windows in Redis before
the events reach the stream), read before a send (the take script's keys, open_in_record).

The database (customer_windows) is the record. Redis holds a read-through copy, one key per
user name that exists exactly while the window is open (it expires when the window closes),
so the common case, an answer to someone who just wrote, costs the sender no database trip.
A missing key only means "ask the database": the copy can say "closed" wrongly, never "open".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alfred.db import dialect_insert, session_scope
from alfred.models import CustomerWindow
from alfred.models.base import utcnow
from alfred.streams import InboundEvent

WINDOW = timedelta(hours=24)
WINDOW_S = int(WINDOW.total_seconds())
# Only templates may open a conversation (FACTS F11); everything else needs an open window.
TYPES_OUTSIDE_WINDOW = frozenset({"template"})


def user_keys(envelope: dict) -> list[str]:
    """Return every name a user goes by: phone number (digits) and BSUID."""
    keys = []
    phone = envelope.get("from")
    if phone:
        keys.append(phone_key(phone)[:64])
    if envelope.get("user_id"):
        keys.append(envelope["user_id"])
    return keys


def phone_key(phone: str) -> str:
    """Normalise a phone number to its digits, as wa_id carries it."""
    return "".join(ch for ch in phone if ch.isdigit())


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


def remember_windows(pipe, events: Sequence[InboundEvent]) -> int:
    """Copy the windows these messages open to Redis, where the sender looks first.

    Queued before the events' appends: the orchestrator may answer the instant an event is in
    the stream, and its answer must find the window open.
    """
    queued = 0
    for event in events:
        if event.event != "message":
            continue
        for key in user_keys(event.envelope):
            queued += remember_open(pipe, event.tenant_id, key, event.timestamp)
    return queued


def open_windows(session: Session, events: Iterable[InboundEvent]) -> None:
    """Record, in the caller's transaction, the windows inbound messages open."""
    latest: dict[tuple[str, str], int] = {}
    for e in events:
        for key in user_keys(e.envelope):
            slot = (e.tenant_id, key)
            latest[slot] = max(latest.get(slot, 0), e.timestamp)
    if not latest:
        return
    now = utcnow()
    rows = [
        {
            "tenant_id": tenant_id,
            "user_key": key,
            "last_inbound_at": datetime.fromtimestamp(ts, UTC),
            "created_at": now,
            "updated_at": now,
        }
        for (tenant_id, key), ts in sorted(latest.items())
    ]
    table = CustomerWindow.__table__
    statement = dialect_insert(session)(table)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "user_key"],
        set_={
            "last_inbound_at": statement.excluded.last_inbound_at,
            "updated_at": statement.excluded.updated_at,
        },
        # An older message arriving late must not shorten the window.
        where=table.c.last_inbound_at < statement.excluded.last_inbound_at,
    )
    session.execute(statement, rows)


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
