"""The web side of ingest: journal a verified delivery, then publish its Celery task."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from functools import lru_cache

import redis
from celery import current_app

from alfred.config import DEFAULT_MAX_BACKLOG, Settings
from alfred.journals.journal import REDRIVE_AFTER_S, BacklogFull, Journal
from alfred.redis_client import wait_for_replicas

INGEST_JOURNAL = "ingest"
# The ingest task's registered name (alfred/ingest/tasks.py). The web publishes it by name, so
# it never imports the worker's side of ingest (the service, media, tokens' tasks, requests):
# ~6 MB a web process (docs/benchmarks.md, What each design option measured).
INGEST_TASK = "alfred.ingest_delivery"
# Ids of journaled deliveries waiting for a worker; a task takes a batch of them at once.
READY_KEY = "alfred:ingest:ready"
# How often each delivery failed on its own (see service.MAX_FAILURES).
FAILURES_KEY = "alfred:ingest:failures"
# Held while an ingest task is queued or draining the ready list: a delivery that finds it
# held publishes no task of its own, since the one under way takes it (CONTRACT.md: publishing
# may be coalesced). The task lets go of it in the same step as it finds the list empty.
SCHEDULED_KEY = "alfred:ingest:scheduled"
# A holder that died (a task killed mid-drain, a web process between its SET and publish)
# stalls coalescing no longer than this: the next delivery after it publishes again, and the
# sweeper re-drives what the dead task held. A draining task refreshes it at every batch.
SCHEDULED_TTL_MS = 10_000

# Journal the delivery, list it as ready and, if no task is under way, claim the right to
# publish one: a single round trip, atomic, so no delivery is listed without a task to take it.
# Past the cap (ARGV[5]) nothing is written and -1 says so: the webhook answers 503.
_ACCEPT = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
if redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[4]) then return 1 end
return 0
"""


@lru_cache(maxsize=8)
def ingest_journal(client: redis.Redis) -> Journal:
    """Return the journal of webhook deliveries not yet in «alfred-ingest»."""
    return Journal(client, INGEST_JOURNAL)


def encode_record(received_at: float, body: bytes) -> bytes:
    """Pack the arrival time (first line) and the raw body exactly as signed."""
    return repr(received_at).encode() + b"\n" + body


def decode_record(record: bytes) -> tuple[float, bytes]:
    """Unpack what encode_record packed."""
    head, _, body = record.partition(b"\n")
    return float(head), body


@lru_cache(maxsize=8)
def _accept_script(client: redis.Redis):
    return client.register_script(_ACCEPT)


def accept_delivery(
    body: bytes,
    *,
    received_at: float,
    journal: Journal,
    publish: Callable[[str], object],
    max_backlog: int = DEFAULT_MAX_BACKLOG,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 100,
) -> str:
    """Make a delivery durable and see that a worker takes it; raise if Redis refuses.

    The delivery is journaled and listed as ready; a task is published only when none is
    queued or draining already (SCHEDULED_KEY). A publish that fails lets go of the claim, so
    the next delivery publishes again; this one's caller answers 503 and Meta retries. With
    `max_backlog` deliveries already journaled, nothing is written: BacklogFull.

    With `wait_replicas`, the journal write is followed by WAIT on the same connection (one
    pipeline, one round trip): durable then means on the master and that many replicas, so a
    failover cannot lose it. Too few replicas in time raises ReplicasBehind (a 503) after the
    task is published: the write stands and is ingested, and Meta's retry is a duplicate.
    """
    delivery_id = uuid.uuid4().hex
    due = time.time() + REDRIVE_AFTER_S
    keys = [journal.records_key, journal.due_key, READY_KEY, SCHEDULED_KEY]
    args = [delivery_id, encode_record(received_at, body), due, SCHEDULED_TTL_MS, max_backlog]
    script = _accept_script(journal.client)
    acked = None
    if wait_replicas:
        pipe = journal.client.pipeline(transaction=False)
        script(keys=keys, args=args, client=pipe)
        pipe.wait(wait_replicas, wait_timeout_ms)
        claimed, acked = pipe.execute()
    else:
        claimed = script(keys=keys, args=args)
    if claimed == -1:
        raise BacklogFull(journal.name, max_backlog)
    if claimed:
        try:
            publish(delivery_id)
        except Exception:
            with contextlib.suppress(redis.RedisError):
                journal.client.delete(SCHEDULED_KEY)
            raise
    if acked is not None:
        wait_for_replicas(acked, wait_replicas, wait_timeout_ms)
    return delivery_id


def publish_ingest(delivery_id: str) -> None:
    """Publish the ingest task for a journaled delivery, failing fast if the broker is down."""
    current_app.send_task(INGEST_TASK, args=[delivery_id])


def prepare_publishing() -> None:
    """Load what a first publish loads (Celery's router, kombu's Redis transport), no socket.

    Called in gunicorn's master before it forks (wsgi.py): the modules and objects are then
    shared by every web worker instead of each worker building its own copy on its first
    delivery. Opens no connection, so nothing is shared across the fork but memory.
    """
    connection = current_app.connection_for_write()
    connection.transport  # noqa: B018 - imports and builds the transport; does not connect
    connection.release()
    current_app.amqp.router  # noqa: B018
    current_app.backend  # noqa: B018
    current_app.events.Dispatcher  # noqa: B018 - celery.events.dispatcher, used by send_task


def tenants_at_the_edge(payload: object, settings: Settings) -> tuple[set[str], set[str]]:
    """Name the tenants a delivery is for, and the numbers or WABAs that belong to none.

    The worker resolves every event again and quarantines the unknown ones; this early
    look lets the web process log and count an unknown number the moment it arrives.
    """
    known: set[str] = set()
    unknown: set[str] = set()
    entries = payload.get("entry") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            if isinstance(metadata, dict):
                number = str(metadata.get("phone_number_id"))
                tenant = settings.tenant_by_phone_number_id(number)
            else:
                number = str(entry.get("id"))
                tenant = settings.tenant_by_waba_id(number)
            if tenant is None:
                unknown.add(number)
            else:
                known.add(tenant.tenant_id)
    return known, unknown
