"""Turn journaled deliveries into stream entries, stored rows and quarantined leftovers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import redis
from sqlalchemy.orm import Session

from alfred import metrics
from alfred.config import Settings
from alfred.db import DATABASE_ERRORS, INFRASTRUCTURE, session_scope
from alfred.ingest import quality, quarantine
from alfred.ingest.limits import Refused, parse_delivery
from alfred.ingest.normalise import RejectedEvent, normalise_delivery
from alfred.ingest.receive import (
    FAILURES_KEY,
    READY_KEY,
    SCHEDULED_KEY,
    SCHEDULED_TTL_MS,
    decode_record,
    ingest_journal,
)
from alfred.ingest.send_failed import send_failed_for_status
from alfred.media.service import jobs_in, media_journal
from alfred.messages.store import store_events
from alfred.streams import SENT_TTL_S, InboundEvent, IngestStream, append_events, sent_key
from alfred.windows import open_windows, remember_windows

log = logging.getLogger(__name__)


# How many waiting deliveries one task takes at once: one transaction and one Redis round
# trip then serve them all, which is what lets a 2-core machine keep up with Meta's bursts.
# 50, not 100: a batch's peak heap stays with the worker after a backlog (4,000 deliveries
# drained: worker PSS 96 MB at 100, 91 at 50), and the drain took no longer
# (docs/benchmarks.md, What each design option measured).
BATCH_SIZE = 50
# How many batches one task drains before it hands over to a fresh task of its own (queued
# behind whatever waits), so that a steady stream never holds one worker thread for ever.
BATCHES_PER_TASK = 20
# Take a batch off the ready list; on finding it empty, let go of the scheduling claim in the
# same step, so a delivery listed after this finds no claim and publishes a task itself.
_TAKE = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if ids then redis.call('PEXPIRE', KEYS[2], ARGV[2]) else redis.call('DEL', KEYS[2]) end
return ids
"""
# A delivery that fails this many times on its own (not for want of Redis or the database)
# is quarantined with the error instead of being re-driven for ever.
MAX_FAILURES = 5
# When a journaled media job whose fetch was never published is re-driven (media.tasks).
MEDIA_REDRIVE_S = 60.0
# Meta retries a delivery for 7 days (FACTS F1): anything later is not a retry, and is held.
META_RETRY_HORIZON_S = 7 * 24 * 3600


@dataclass
class IngestOutcome:
    """What became of one or more deliveries."""

    appended: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)  # fingerprints
    deliveries: int = 0
    already_done: bool = False
    drained: bool = False  # the ready list was found empty (and the claim let go)
    media_jobs: list[dict] = field(default_factory=list)  # journaled; the task publishes them


@lru_cache(maxsize=8)
def _take_script(client: redis.Redis):
    return client.register_script(_TAKE)


def drain_ready(*, settings: Settings, client: redis.Redis) -> tuple[IngestOutcome, bool]:
    """Ingest batches off the ready list until it is empty or BATCHES_PER_TASK are done.

    Return the total and whether deliveries may remain (the caller publishes another task).
    """
    total = IngestOutcome()
    for _ in range(BATCHES_PER_TASK):
        outcome = process_delivery("", settings=settings, client=client)
        _add(total, outcome)
        if outcome.drained:
            return total, False
    return total, True


def process_delivery(delivery_id: str, *, settings: Settings, client: redis.Redis) -> IngestOutcome:
    """Ingest up to BATCH_SIZE deliveries waiting in the ready list, in one go.

    Every accepted delivery is pushed on the ready list with its journal record; a task is
    published for the first one that finds no task under way (receive.accept_delivery), and
    that task drains the list (drain_ready). A re-driven delivery publishes a task of its own.
    """
    _ = delivery_id  # its id is on the ready list; the task only says "there is work"
    journal = ingest_journal(client)
    taken = _take_script(client)(
        keys=[READY_KEY, SCHEDULED_KEY], args=[BATCH_SIZE, SCHEDULED_TTL_MS]
    )
    # The same id may be listed twice (a re-drive of a delivery still waiting): once is enough.
    ids = list(dict.fromkeys(i.decode() for i in taken or []))
    if not ids:
        return IngestOutcome(already_done=True, drained=True)
    records = client.hmget(journal.records_key, ids)
    batch = [(i, decode_record(r)) for i, r in zip(ids, records, strict=True) if r is not None]
    if not batch:
        return IngestOutcome(already_done=True)
    try:
        try:
            outcome = ingest_bodies([item for _, item in batch], settings=settings, client=client)
            done = [i for i, _ in batch]
        except DATABASE_ERRORS as exc:
            # The database is down (or timed out): the stream does not wait for it. The events
            # go on now and the deliveries stay journaled; the sweeper re-drives them when due,
            # and that run stores them (its appends find the events there and add nothing).
            outcome = append_without_storage(
                [item for _, item in batch], settings=settings, client=client
            )
            done = []
            log.warning(
                "ingest.stored_later",
                extra={"deliveries": len(batch), "appended": outcome.appended, "error": str(exc)},
            )
        except INFRASTRUCTURE:
            raise
        except Exception:
            log.exception("ingest.batch_failed", extra={"deliveries": len(batch)})
            outcome, done = _one_by_one(batch, settings=settings, client=client)
    except INFRASTRUCTURE:
        # A lock timeout or a dropped connection: hand the batch back for the retry. If Redis
        # itself is gone the hand-back fails too, and the error raised is still the first one:
        # the journal keeps the batch, and the worker re-drives it once Redis is back
        # (journals.tasks.SweepOnReconnect), or the sweeper when it falls due.
        with contextlib.suppress(redis.RedisError):
            client.lpush(READY_KEY, *reversed([i for i, _ in batch]))
        raise
    journal.done_many(done)
    return outcome


def _one_by_one(batch, *, settings: Settings, client: redis.Redis) -> tuple[IngestOutcome, list]:
    """Ingest each delivery alone, so one that breaks holds back no other; return those done."""
    total, done = IngestOutcome(), []
    for delivery_id, (received_at, body) in batch:
        try:
            outcome = ingest_bodies([(received_at, body)], settings=settings, client=client)
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            failures = client.hincrby(FAILURES_KEY, delivery_id, 1)
            log.exception(
                "ingest.delivery_failed",
                extra={"delivery_id": delivery_id, "failures": failures},
            )
            if failures < MAX_FAILURES:
                continue  # still journaled: the sweeper re-drives it when it falls due
            with session_scope(settings.database_url) as session:
                print_ = quarantine.hold_failed(
                    session, body, detail=f"{type(exc).__name__}: {exc}", received_at=received_at
                )
            outcome = IngestOutcome(quarantined=[print_])
        client.hdel(FAILURES_KEY, delivery_id)
        _add(total, outcome)
        done.append(delivery_id)
    return total, done


def ingest_body(
    body: bytes | str,
    *,
    received_at: float,
    settings: Settings,
    client: redis.Redis,
    check_skew: bool = True,
) -> IngestOutcome:
    """Ingest one delivery's body (replays and tests); see ingest_bodies."""
    return ingest_bodies(
        [(received_at, body)], settings=settings, client=client, check_skew=check_skew
    )


def ingest_bodies(
    batch: list[tuple[float, bytes | str]],
    *,
    settings: Settings,
    client: redis.Redis,
    check_skew: bool = True,
) -> IngestOutcome:
    """Normalise deliveries, store them, quarantine what cannot go on, append the rest once."""
    outcome = IngestOutcome(deliveries=len(batch))
    max_skew = settings.webhook_max_skew_s if check_skew else None
    events: list[InboundEvent] = []
    arrivals: list[float] = []
    with session_scope(settings.database_url) as session:
        for received_at, body in batch:
            try:
                payload = parse_delivery(body)
            except Refused as exc:
                outcome.quarantined.append(
                    quarantine.hold_refused(
                        session, body, reason=exc.reason, detail=exc.detail, received_at=received_at
                    )
                )
                continue
            going, held, rejected, seen = _settled(client, payload, received_at, settings, max_skew)
            events.extend(going)
            arrivals.extend([received_at] * len(going))
            for event in seen:
                outcome.duplicates += 1
                metrics.INGEST_EVENTS.labels(event.tenant_id, event.event, "duplicate").inc()
            for event in held:
                outcome.quarantined.append(
                    quarantine.hold_stale(
                        session, event, received_at=received_at, max_skew=max_skew
                    )
                )
            if rejected:
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
                for rejection in rejected:
                    outcome.quarantined.append(
                        quarantine.hold_rejected(
                            session, rejection, delivery=text, received_at=received_at
                        )
                    )
        # Rows first: the orchestrator may answer the instant an event is in the stream,
        # and its send needs the customer-service window this opens.
        store(session, events)
        failures, failed_arrivals = [], []
        for event, received_at in zip(events, arrivals, strict=True):
            if _is_failed(event):
                failures.append(send_failed_for_status(session, event))
                failed_arrivals.append(received_at)
    arrivals += failed_arrivals
    _append_and_count(client, events + failures, arrivals, outcome)
    return outcome


def append_without_storage(
    batch: list[tuple[float, bytes | str]], *, settings: Settings, client: redis.Redis
) -> IngestOutcome:
    """Append deliveries' events to «alfred-ingest» without the database (it is down).

    What needs the database waits for the run that stores the deliveries: the rows, the
    quarantine of what is refused, stale or rejected, and the send_failed events of failed
    statuses (their message is looked up there). The windows the messages open still reach
    Redis, where the sender looks first, in the same step as the appends.
    """
    outcome = IngestOutcome(deliveries=len(batch))
    events: list[InboundEvent] = []
    arrivals: list[float] = []
    for received_at, body in batch:
        try:
            payload = parse_delivery(body)
        except Refused:
            continue
        going, _held, _rejected, seen = _settled(
            client, payload, received_at, settings, settings.webhook_max_skew_s
        )
        events.extend(going)
        arrivals.extend([received_at] * len(going))
        outcome.duplicates += len(seen)
    _append_and_count(client, events, arrivals, outcome)
    return outcome


def _settled(
    client: redis.Redis,
    payload: object,
    received_at: float,
    settings: Settings,
    max_skew: float | None,
) -> tuple[list[InboundEvent], list[InboundEvent], list, list[InboundEvent]]:
    """Normalise one parsed delivery: (events to append, stale to hold, rejected, already seen)."""
    results = normalise_delivery(
        payload,
        tenant_for_phone=lambda pid: _tenant_id(settings.tenant_by_phone_number_id(pid)),
        tenant_for_waba=lambda waba: _tenant_id(settings.tenant_by_waba_id(waba)),
        received_at=received_at,
    )
    fresh, stale, rejected = _partition(results, received_at, max_skew)
    late, held, seen = _settle_late(client, stale, received_at, settings)
    return fresh + late, held, rejected, seen


def _append_and_count(
    client: redis.Redis, events: list[InboundEvent], arrivals: list[float], outcome: IngestOutcome
) -> None:
    """Append events once, and count each as appended or a duplicate (and its latency)."""
    appended = append_inbound(client, events)
    # Every media message, new or a redelivery: a fetch already done costs one row lookup.
    outcome.media_jobs = [job.to_dict() for job in jobs_in([e.envelope for e in events])]
    now = time.time()
    for event, added, received_at in zip(events, appended, arrivals, strict=True):
        outcome.appended += added
        outcome.duplicates += not added
        metrics.INGEST_EVENTS.labels(
            event.tenant_id, event.event, "appended" if added else "duplicate"
        ).inc()
        if added:
            metrics.INGEST_LATENCY.observe(max(0.0, now - received_at))
            if event.event == "phone_number_quality_update":
                quality.observe(event.tenant_id, event.envelope.get("raw") or {})


def _add(total: IngestOutcome, part: IngestOutcome) -> None:
    total.appended += part.appended
    total.duplicates += part.duplicates
    total.quarantined.extend(part.quarantined)
    total.deliveries += part.deliveries
    total.media_jobs.extend(part.media_jobs)


def store(session: Session, events: Sequence[InboundEvent]) -> None:
    """Write inbound events' rows and the windows their messages open, in one transaction."""
    store_events(session, events)
    open_windows(session, [e for e in events if e.event == "message"])


def append_inbound(client: redis.Redis, events: list[InboundEvent]) -> list[bool]:
    """Append inbound events once, with the sent marks and windows they bring, queued first."""
    return append_events(client, events, before=_remember)


def _remember(pipe, events: list[InboundEvent]) -> int:
    return (
        remember_accepted_sends(pipe, events)
        + remember_windows(pipe, events)
        + remember_media(pipe, events)
    )


def remember_media(pipe, events: list[InboundEvent]) -> int:
    """Journal a fetch for each media message, queued before the appends that announce it.

    So a message in the stream always has its media job somewhere: if the worker dies before
    it publishes the fetch, the sweeper does (alfred/media/tasks.py).
    """
    jobs = jobs_in([event.envelope for event in events])
    journal = media_journal(pipe)
    for job in jobs:
        journal.add(job.entry_id, json.dumps(job.to_dict()), due_in=MEDIA_REDRIVE_S, client=pipe)
    return 2 * len(jobs)  # HSET and ZADD each


def remember_accepted_sends(pipe, events: Sequence[InboundEvent]) -> int:
    """Mark our messages that Meta reports on as sent, keyed as the sender keys them.

    A sender killed after Meta accepted a message but before it recorded the wamid leaves
    no trace; the status webhook, which echoes the key in biz_opaque_callback_data, does.
    The re-driven send then finds the key sent and does not send it twice.
    """
    queued = 0
    for event in events:
        key = event.envelope.get("biz_opaque_callback_data") if event.event == "status" else None
        if key:
            pipe.set(sent_key(event.tenant_id, str(key)), event.id, nx=True, ex=SENT_TTL_S)
            queued += 1
    return queued


def _tenant_id(tenant) -> str | None:
    return tenant.tenant_id if tenant is not None else None


def _is_failed(event: InboundEvent) -> bool:
    return event.event == "status" and event.envelope.get("status") == "failed"


def _settle_late(client: redis.Redis, stale: list[InboundEvent], received_at: float, settings):
    """Sort late events into those to deliver, to quarantine, and those already in the stream.

    The duplicate check comes first: Meta's retries keep their original timestamps, so a
    redelivery is late by nature, and a late duplicate is just a duplicate. A late event that is
    new follows WEBHOOK_STALE_POLICY, except past Meta's 7-day retry horizon: always held.
    """
    if not stale:
        return [], [], []
    pipe = client.pipeline(transaction=False)
    for event in stale:
        pipe.exists(IngestStream.dedupe_key(event.tenant_id, event.event, event.dedupe_key))
    late, held, seen = [], [], []
    for event, exists in zip(stale, pipe.execute(), strict=True):
        delay = received_at - event.timestamp
        if exists:
            seen.append(event)
        elif settings.webhook_stale_policy == "deliver" and 0 <= delay <= META_RETRY_HORIZON_S:
            envelope = {**event.envelope, "late": True, "late_by_s": round(delay, 1)}
            late.append(dataclasses.replace(event, envelope=envelope))
        else:
            held.append(event)
    return late, held, seen


def _partition(results, received_at: float, max_skew: float | None):
    events: list[InboundEvent] = []
    stale: list[InboundEvent] = []
    rejected: list[RejectedEvent] = []
    for result in results:
        if isinstance(result, RejectedEvent):
            rejected.append(result)
        elif max_skew is not None and abs(received_at - result.timestamp) > max_skew:
            stale.append(result)
        else:
            events.append(result)
    return events, stale, rejected
