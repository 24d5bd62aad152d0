"""Accepted calls, written to the database in batches instead of one transaction a send.

The sender records Meta's acceptance in Redis, in the same script that marks the key sent
(alfred/outbound/service.py): the call's audit record goes into a journal and its id onto a
ready list. A task takes up to BATCH_SIZE records at a time and writes them in one
transaction (alfred.messages.audit.write_accepted), so the database costs a send a share of
a batch, not a round of statements and a commit. The journal keeps each record until it is
written; a record whose task was lost is re-driven by the sweeper, as the ingest journal's are, and
writing one twice changes nothing (each call has its own id). See docs/outbound.md.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

import redis

from alfred.config import Settings
from alfred.db import INFRASTRUCTURE, session_scope
from alfred.journals.journal import Journal
from alfred.messages import audit

log = logging.getLogger(__name__)

AUDIT_JOURNAL = "audit"
# Ids of accepted calls waiting to be written; a task takes a batch of them at once.
READY_KEY = "alfred:audit:ready"
BATCH_SIZE = 500
# The task is published this long after the first record of a batch: sends meanwhile join
# the batch (at 500 sends/s, about 100 a transaction), at the price of rows that appear this
# much later. Without it a fast worker writes a batch of one or two, a task each.
GATHER_S = 0.2
# A task writes batches until the list is empty, within bounds, then leaves the rest to the
# task the next record publishes (or the sweeper).
MAX_BATCHES = 20
# At most one re-driven batch task per this many seconds (see outbound.tasks.redrive_audit).
KICK_KEY = "alfred:audit:kick"
KICK_EVERY_S = 5


@lru_cache(maxsize=8)
def audit_journal(client: redis.Redis) -> Journal:
    """Return the journal of accepted calls not yet written to the database."""
    return Journal(client, AUDIT_JOURNAL)


def write_pending(*, settings: Settings, client: redis.Redis) -> int:
    """Write the accepted calls waiting on the ready list, a batch per transaction."""
    journal = audit_journal(client)
    written = 0
    for _ in range(MAX_BATCHES):
        # A re-driven id may be listed twice: once is enough.
        ids = list(dict.fromkeys(i.decode() for i in client.lpop(READY_KEY, BATCH_SIZE) or []))
        if not ids:
            break
        found = [
            (call_id, raw)
            for call_id, raw in zip(ids, client.hmget(journal.records_key, ids), strict=True)
            if raw is not None  # written by an earlier batch
        ]
        try:
            try:
                _write(settings, [raw for _, raw in found])
                done = [call_id for call_id, _ in found]
            except INFRASTRUCTURE:
                raise
            except Exception:
                log.exception("audit.batch_failed", extra={"records": len(found)})
                done = _one_by_one(settings, found)
        except INFRASTRUCTURE:
            # Hand the batch back for the retry (if Redis itself is gone, the journal keeps
            # the records and the sweeper re-drives them).
            client.lpush(READY_KEY, *reversed(ids))
            raise
        journal.done_many(done)
        written += len(done)
        if len(ids) < BATCH_SIZE:
            break
    return written


def _write(settings: Settings, raws: list[bytes]) -> None:
    with session_scope(settings.database_url) as session:
        audit.write_accepted(session, [json.loads(raw) for raw in raws])


def _one_by_one(settings: Settings, found: list[tuple[str, bytes]]) -> list[str]:
    """Write each record alone, so one that breaks holds back no other; return those written.

    A record that fails stays journaled, logged with its error each time the sweeper brings
    it back (and counted in alfred_journal_size{journal="audit"}) until the bug is fixed.
    """
    done = []
    for call_id, raw in found:
        try:
            _write(settings, [raw])
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            log.error(
                "audit.record_failed",
                extra={"call_id": call_id, "error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            continue
        done.append(call_id)
    return done
