"""Work kept in Redis outside Celery's transport until it is done, and re-driven if it stalls.

A task popped off Celery's Redis transport belongs to the worker that popped it: if that
worker is SIGKILLed, the task is gone (celeryconfig.py runs without kombu's acknowledgement
emulation, whose timer would bring it back only after `visibility_timeout`; FACTS, Celery
section). Each unit of work is therefore written here before its task is published and
removed only once its outcome is durable; a sweeper re-publishes whatever is overdue.
Re-driving may run a task twice: every consumer of the journal is idempotent (dedupe keys,
idempotency keys).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

# An entry still journaled this long past its due time lost its task; re-drive it. One value
# for every journal: each falls due 30 s after it was written (or after its countdown).
REDRIVE_AFTER_S = 30.0

# The header every journaled task carries: when it was published (Unix seconds). The sweeper
# reads it off the oldest task still waiting in a queue (waiting_since).
PUBLISHED_AT = "alfred_published_at"

# ARGV[4], when given, caps the journal: a NEW entry is refused (0) once that many are kept.
# An entry already journaled (a retry, a re-drive) always passes: refusing it would strand it.
_ADD = """
if ARGV[4] and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4])
    and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if KEYS[3] then redis.call('RPUSH', KEYS[3], ARGV[1]) end
return 1
"""
_CLAIM_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""


class BacklogFull(RuntimeError):
    """New work refused: the journal already holds its cap of work not yet done."""

    def __init__(self, name: str, limit: int):
        super().__init__(
            f"the {name} backlog holds {limit} entries not yet done (its cap): try again later"
        )
        self.name = name
        self.limit = limit


class Journal:
    """A Redis hash of records and a sorted set of when each is due to be re-driven."""

    def __init__(self, client: redis.Redis, name: str):
        self.client = client
        self.name = name
        self.records_key = f"alfred:journal:{name}:records"
        self.due_key = f"alfred:journal:{name}:due"
        self._claim = client.register_script(_CLAIM_DUE)
        self._add = client.register_script(_ADD)

    def add(
        self,
        entry_id: str,
        record: bytes | str,
        *,
        due_in: float,
        client=None,
        also_push_to: str | None = None,
        now: float | None = None,
        max_backlog: int | None = None,
    ) -> None:
        """Keep a record; it is re-driven if still here `due_in` seconds from now.

        With `also_push_to`, the id is appended to that list in the same atomic step. With a
        pipeline as `client`, the writes are queued on it instead. With `max_backlog`, a new
        entry is refused (BacklogFull) once the journal holds that many.
        """
        due = (time.time() if now is None else now) + due_in
        if client is not None:
            client.hset(self.records_key, entry_id, record)
            client.zadd(self.due_key, {entry_id: due})
            if also_push_to:
                client.rpush(also_push_to, entry_id)
            return
        # One script, not a MULTI pipeline: a redis-py pipeline costs more to build than the
        # round trip it saves, and this runs on every webhook.
        keys = [self.records_key, self.due_key] + ([also_push_to] if also_push_to else [])
        cap = [] if max_backlog is None else [max_backlog]
        if not self._add(keys=keys, args=[entry_id, record, due, *cap]):
            raise BacklogFull(self.name, int(max_backlog or 0))

    def get(self, entry_id: str) -> bytes | None:
        """Return a record, or None once it is done."""
        return self.client.hget(self.records_key, entry_id)

    def done(self, entry_id: str) -> None:
        """Forget a record whose outcome is durable."""
        self.done_many([entry_id])

    def done_many(self, entry_ids: list[str]) -> None:
        """Forget several records at once."""
        if entry_ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.records_key, *entry_ids)
            pipe.zrem(self.due_key, *entry_ids)
            pipe.execute()

    def claim_due(
        self,
        *,
        now: float | None = None,
        lease: float,
        cutoff: float | None = None,
        limit: int = 500,
    ) -> list[str]:
        """Return the ids due before `cutoff` (default: now), each due again `lease` from now.

        Read and rescheduled in one script, so two sweepers never claim the same entry. The
        bound is exclusive: with a cutoff of now + lease, a claimed entry (now due at exactly
        now + lease) is not claimed a second time by the next round of the same sweep.
        """
        now = time.time() if now is None else now
        until = now if cutoff is None else cutoff
        ids = self._claim(keys=[self.due_key], args=[until, now + lease, limit])
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    def size(self) -> int:
        """Count the records not yet done."""
        return int(self.client.zcard(self.due_key))


def journal_for_publish(
    journal: Journal,
    entry_id: str,
    record: bytes | str,
    options: dict,
    *,
    redrive_after_s: float,
    max_backlog: int | None = None,
) -> dict:
    """Journal a task's record before it is published; return its publish options, stamped.

    The entry falls due `redrive_after_s` after the task's countdown. The options gain the
    PUBLISHED_AT header with the very time the entry was written, so that the sweeper never
    counts the entry of the task heading the queue as taken (waiting_since).
    """
    now = time.time()
    due_in = float(options.get("countdown") or 0) + redrive_after_s
    journal.add(entry_id, record, due_in=due_in, now=now, max_backlog=max_backlog)
    return {**options, "headers": {**(options.get("headers") or {}), PUBLISHED_AT: now}}


def waiting_since(client: redis.Redis, queue: str) -> float | None:
    """Return when the oldest task still waiting in a Celery queue was published, if known.

    kombu's Redis transport keeps a queue as a list, LPUSHes and BRPOPs: the list's last
    element is the next task a worker takes. Every task published before it has been taken,
    so its journal entry, if still there, is running, waiting for its countdown, or lost with
    a worker; every task published after it is still queued and not lost. None when the queue
    is empty or its oldest task carries no PUBLISHED_AT header (published by older code).
    """
    head = client.lindex(queue, -1)
    if head is None:
        return None
    try:
        published = json.loads(head)["headers"][PUBLISHED_AT]
    except (ValueError, KeyError, TypeError):
        return None
    return float(published) if isinstance(published, int | float) else None


@dataclass(frozen=True)
class Registration:
    """How the sweeper finds one journal and re-drives an entry of it."""

    name: str
    journal: Callable[[redis.Redis], Journal]
    redrive: Callable[[str], object]
    # The task whose queue holds one task per entry, if there is such a queue. (An ingest task
    # takes a batch of deliveries off a list: a task still queued says nothing of the
    # deliveries an earlier one took.)
    task: str | None = None
    lease: float = REDRIVE_AFTER_S


_REGISTRY: dict[str, Registration] = {}


def register(
    name: str,
    journal: Callable[[redis.Redis], Journal],
    redrive: Callable[[str], object],
    *,
    task: str | None = None,
    lease: float = REDRIVE_AFTER_S,
) -> None:
    """Let the sweeper re-drive a journal: each package registers its own, from its tasks.py."""
    _REGISTRY[name] = Registration(name, journal, redrive, task, lease)


def registered() -> list[Registration]:
    """Return the journals registered so far, in the order they registered."""
    return list(_REGISTRY.values())
