"""Dead letters: list them, and put them back in the queue with fresh attempts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis

from alfred.db import session_scope
from alfred.messages import store
from alfred.models import Message


class NoSuchDeadLetter(LookupError):
    """No dead-lettered message has the key asked for."""


class AmbiguousKey(ValueError):
    """The key is dead-lettered in several tenants: the tenant must be named."""


@dataclass(frozen=True)
class Replayed:
    """One dead letter put back in the queue, or the reason it could not be."""

    tenant_id: str
    key: str
    error: str | None = None


def list_dead_letters(
    database_url: str, *, tenant_id: str | None = None, limit: int = 50
) -> list[Message]:
    """Return dead-lettered messages, newest first (every tenant's unless one is named)."""
    with session_scope(database_url) as session:
        return store.dead_letters(session, tenant_id=tenant_id, limit=limit)


def pick(
    database_url: str, *, key: str | None, tenant_id: str | None, limit: int
) -> list[tuple[int, str, str, int]]:
    """Choose the dead letters to replay: one key, or (key None) the newest `limit`."""
    with session_scope(database_url) as session:
        if key is None:
            rows = store.dead_letters(session, tenant_id=tenant_id, limit=limit)
        else:
            rows = store.dead_letters(session, tenant_id=tenant_id, limit=limit, key=key)
            if not rows:
                raise NoSuchDeadLetter(f"no dead-lettered message with key {key!r}")
            if len(rows) > 1:
                raise AmbiguousKey(f"key {key!r} is dead-lettered in several tenants: add --tenant")
        return [(r.id, r.tenant_id, str(r.idempotency_key), r.attempts) for r in rows]


def replay(
    database_url: str,
    client: redis.Redis,
    picked: list[tuple[int, str, str, int]],
    *,
    enqueue: Callable[[dict], object],
) -> Iterator[Replayed]:
    """Reopen each dead letter and enqueue it; one that cannot be queued stays dead-lettered."""
    for row_id, tenant_id, key, attempts in picked:
        with session_scope(database_url) as session:
            row = session.get(Message, row_id)
            if row is None:  # deleted since it was picked
                continue
            message = store.reopen(session, row, client)
        message.pop("enqueued_at", None)  # measure the send lag from this replay
        try:
            enqueue(message)
        except Exception as exc:
            with session_scope(database_url) as session:
                # Not queued after all: leave it dead-lettered, as it was, to replay later.
                store.dead_letter_again(session, tenant_id, row_id, attempts)
            yield Replayed(tenant_id, key, error=str(exc))
            continue
        yield Replayed(tenant_id, key)
