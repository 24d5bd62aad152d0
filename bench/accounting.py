"""Where every message of a bench run is: one way of counting lost and duplicated, for all.

Every bench and load run asks the same two questions of its sends: which reached Meta (the
simulator), which the bridge recorded as failed, which are still on their way, and which
are gone. "Gone" has to be read in the right order, or a backlog draining during the reads
is counted as lost (a 5-minute `make load` counted 950 that way, docs/benchmarks.md):

- a send is journaled before its task is published (alfred/journals/journal.py) and leaves
  the journal only after its outcome is durable: the simulator recorded Meta's acceptance
  before the bridge's `accepted` script forgets the entry, and a failed send's row is
  written before `Journal.done`;
- so the Celery queue and the journal are read first, and the outcomes after them. A send in
  neither the queue nor the journal was done before those reads, and the later reads of the
  simulator and the database see it; a send in none of them is really lost.

A send still on its way is one of: queued (its task is in the Celery list), or in the
worker (journaled, its task taken: running, or held for a retry's countdown). Neither is a
loss: the journal keeps it and the sweeper re-drives it if its task was lost.

Duplicates are counted from the simulator's own records of this run's keys: a key accepted
twice is one duplicate, whatever else the simulator saw.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

import requests

from alfred.ingest.receive import READY_KEY as INGEST_READY_KEY
from alfred.ingest.receive import decode_record, ingest_journal
from alfred.outbound.audit_batch import READY_KEY as AUDIT_READY_KEY
from alfred.outbound.audit_batch import audit_journal
from alfred.outbound.pending import outbound_journal

# kombu's Redis transport keeps each queue as a list named after it (celeryconfig.task_routes).
QUEUES = ("outbound", "ingest", "alfred")
OUTBOUND_QUEUE = "outbound"
FINAL = ("failed", "dead_lettered", "invalid")


def sim_records(sim_url: str, prefix: str) -> list[dict]:
    """Return the simulator's accepted messages whose idempotency key starts with `prefix`."""
    response = requests.get(
        f"{sim_url}/_sim/messages", params={"key_prefix": prefix, "limit": 10**7}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


def failed_keys(database_url: str, prefix: str) -> set[str]:
    """Return the idempotency keys with `prefix` recorded failed, dead-lettered or invalid."""
    from sqlalchemy import select

    from alfred.db import get_engine
    from alfred.models import Message

    with get_engine(database_url).connect() as connection:
        return set(
            connection.scalars(
                select(Message.idempotency_key).where(
                    Message.idempotency_key.like(f"{prefix}%"), Message.status.in_(FINAL)
                )
            )
        )


def queue_lengths(client) -> dict[str, int]:
    """Return the length of each Celery queue."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))


def queued_send_keys(client, prefix: str) -> set[str]:
    """Return the idempotency keys of send_message tasks waiting in the outbound queue.

    A task message in kombu's list is JSON whose body is the base64 of Celery's protocol 2
    body, [args, kwargs, embed]; send_message's one argument is the message.
    """
    keys: set[str] = set()
    for raw in client.lrange(OUTBOUND_QUEUE, 0, -1):
        try:
            envelope = json.loads(raw)
            if envelope.get("headers", {}).get("task") != "alfred.send_message":
                continue
            args = json.loads(base64.b64decode(envelope["body"]))[0]
            key = str(args[0].get("idempotency_key") or "")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
        if key.startswith(prefix):
            keys.add(key)
    return keys


def journaled_send_keys(client, prefix: str) -> set[str]:
    """Return the idempotency keys with `prefix` still in the outbound journal."""
    keys = set()
    # Entry ids are "tenant:key" (alfred/outbound/pending.py); tenant ids hold no colon.
    for entry in client.zrange(outbound_journal(client).due_key, 0, -1):
        _tenant, _, key = entry.decode().partition(":")
        if key.startswith(prefix):
            keys.add(key)
    return keys


def sends(client, sim_url: str, database_url: str, prefix: str, enqueued) -> dict:
    """Account for every enqueued send of a run (its keys start with `prefix`).

    Reads, in this order: the outbound queue, the journal, then the simulator and the
    database (the module's docstring says why the order matters). Return the counts, the
    accepted time of each key, and a sample of what is lost.
    """
    expected = set(enqueued)
    queued = queued_send_keys(client, prefix) & expected
    journaled = journaled_send_keys(client, prefix) & expected
    records = sim_records(sim_url, prefix)
    failed = failed_keys(database_url, prefix) & expected
    counts = Counter(r["key"] for r in records)
    accepted: dict[str, float] = {}
    for record in records:  # oldest first: keep each key's first acceptance
        accepted.setdefault(record["key"], record["accepted_at"])
    sent = accepted.keys() & expected
    settled = sent | failed
    pending = journaled - settled
    lost = sorted(expected - settled - pending - queued)
    return {
        "enqueued": len(expected),
        "sent": len(sent),
        "failed": len(failed),
        # Not yet sent when counted: still in the Celery queue, or in the worker (taken,
        # running or waiting a retry's countdown). Journaled either way: not lost.
        "pending": len(pending | (queued - settled)),
        "pending_queued": len(queued - settled),
        "pending_in_worker": len(pending - queued),
        "lost": len(lost),
        "lost_keys_sample": lost[:20],
        "duplicates": sum(n - 1 for key, n in counts.items() if key in expected),
        "not_ours_accepted": len(accepted.keys() - expected),
        "accepted_at": {k: accepted[k] for k in sent},
    }


def backlog(client) -> dict:
    """Return what the stack still has to do: queue lengths and journal sizes."""
    return {
        "queues": queue_lengths(client),
        "journals": {
            "outbound": outbound_journal(client).size(),
            "ingest": ingest_journal(client).size(),
            "audit": audit_journal(client).size(),
        },
        "ready_lists": {
            "ingest": int(client.llen(INGEST_READY_KEY)),
            "audit": int(client.llen(AUDIT_READY_KEY)),
        },
    }


def idle(state: dict) -> bool:
    """Say whether a backlog() shows nothing left to do."""
    return not any(
        [*state["queues"].values(), *state["journals"].values(), *state["ready_lists"].values()]
    )


def journaled_wamids(client, prefix: str) -> set[str]:
    """Return the inbound message ids with `prefix` in deliveries still in the ingest journal."""
    found: set[str] = set()
    journal = ingest_journal(client)
    for raw in client.hvals(journal.records_key):
        try:
            payload = json.loads(decode_record(raw)[1])
            for entry in payload.get("entry") or []:
                for change in entry.get("changes") or []:
                    for message in (change.get("value") or {}).get("messages") or []:
                        wamid = str(message.get("id", ""))
                        if wamid.startswith(prefix):
                            found.add(wamid)
        except (ValueError, AttributeError, TypeError):
            continue
    return found


def deliveries(client, prefix: str, accepted: int, in_stream) -> dict:
    """Account for the inbound messages a run's web accepted (`accepted`, as its client saw).

    The ingest journal is read before the stream (`in_stream()` returns the wamids found in
    «alfred-ingest», repeats included), for the same reason as sends(): a delivery leaves the
    journal only once its events are appended. A client that stops mid-request may not count
    a request the web did accept: those reach the stream too, and never make "lost" negative.
    """
    waiting = journaled_wamids(client, prefix)
    found = list(in_stream())
    unique = set(found)
    return {
        "accepted_by_web": accepted,
        "reached_stream": len(unique),
        "pending": len(waiting - unique),
        "lost": max(0, accepted - len(unique) - len(waiting - unique)),
        "duplicates": len(found) - len(unique),
        "beyond_client_count": max(0, len(unique) - accepted),
    }


def wait_drained(
    client,
    progress,
    *,
    timeout_s: float,
    extra_busy=lambda: 0,
    stall_s: float = 60.0,
    interval_s: float = 1.0,
) -> dict:
    """Wait until the stack's queues, journals and ready lists are empty, within bounds.

    `extra_busy()` counts work outside Redis still to come (the simulator's status callbacks
    not yet sent); `progress()` returns something that changes while work gets done (counts
    of outcomes). The wait gives up early when neither it nor the backlog changed for
    `stall_s` (nothing is draining), and in any case after `timeout_s`. Return how long it
    waited, whether it drained, and the backlog when it stopped.
    """
    started = time.monotonic()
    last_change = started
    last = None
    while True:
        state = {**backlog(client), "elsewhere": extra_busy()}
        drained = idle(state) and not state["elsewhere"]
        now = time.monotonic()
        if drained:
            break
        seen = (progress(), json.dumps(state, sort_keys=True))
        if seen != last:
            last, last_change = seen, now
        if now - started >= timeout_s or now - last_change >= stall_s:
            break
        time.sleep(interval_s)
    return {
        "waited_s": round(time.monotonic() - started, 1),
        "drained": drained,
        "backlog_at_end": state,
    }
