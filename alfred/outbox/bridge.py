"""The outbox bridge: «alfred-outbox» entries handed to the sender, each acked only once enqueued.

Delivery is at least once. An entry leaves the group's pending list only after `enqueue`
returned (the real one journals the message durably) or after `reject` recorded why it is
not a message. An entry read by a consumer that died is taken over with XAUTOCLAIM once idle;
a re-read entry keeps its idempotency key, so the sender sends it once. See
docs/outbound-limits.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import redis

from alfred import metrics, runtime
from alfred.journals.journal import BacklogFull
from alfred.logs import configure_logging
from alfred.outbound.tasks import send_message, sender
from alfred.streams import OUTBOUND_GROUP, OUTBOX_STREAM

log = logging.getLogger(__name__)

# A burst of failures in one batch means the broker is down, not that the entries are bad:
# stop the batch and back off rather than fail a hundred entries one timeout at a time.
MAX_FAILURES_PER_BATCH = 3
# Consumers named hostname-pid pile up in the group across restarts; forget those that have
# nothing pending and have not been seen for this long (a live bridge reads every block_ms).
FORGET_CONSUMER_AFTER_MS = 3_600_000
FORGET_EVERY_S = 600.0
# The liveness heartbeat (alfred/operations/exporter.py), from the loop itself.
HEARTBEAT_EVERY_S = 5.0
TRIMMED = "entry was trimmed from the stream before it was sent"


def default_consumer_name() -> str:
    """Name this process's consumer hostname-pid, unique among live bridges."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def message_from_entry(entry_id: str, fields: dict) -> dict:
    """Parse an entry's JSON `payload` into a message, with a stable default idempotency key."""
    fields = {_text(k): v for k, v in (fields or {}).items()}
    if "payload" not in fields:
        raise ValueError("entry has no 'payload' field")
    raw = fields["payload"]
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"payload is not UTF-8: {exc}") from None
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError(f"payload is a JSON {type(message).__name__}, not an object")
    key = message.get("idempotency_key")
    if key is None or key == "":
        # Derived from the entry id, so every re-read of this entry carries the same key.
        message["idempotency_key"] = f"outbox:{entry_id}"
    elif not isinstance(key, str):
        raise ValueError(f"idempotency_key must be a string, not {type(key).__name__}")
    return message


class OutboxBridge:
    """Reads «alfred-outbox» in a consumer group and hands each message to `enqueue`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        enqueue: Callable[[dict], object],
        reject: Callable[[str, dict, str], None],
        consumer: str | None = None,
        stream: str = OUTBOX_STREAM,
        group: str = OUTBOUND_GROUP,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_backoff_s: float = 5.0,
    ):
        self.client = client
        self.enqueue = enqueue
        self.reject = reject
        self.consumer = consumer or default_consumer_name()
        self.stream = stream
        self.group = group
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_backoff_s = max_backoff_s
        # Start by re-reading our own pending entries: after a restart under the same name
        # they were read but perhaps never enqueued.
        self._pending_cursor: str | None = "0"
        self._claim_cursor = "0-0"
        self._next_claim_scan = 0.0
        self._next_forget = time.monotonic() + FORGET_EVERY_S
        self._group_ready = False
        self.enqueue_failures = 0  # in the last batch; run_forever backs off when any

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing, reading from the start."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("outbox.group_created", extra={"stream": self.stream, "group": self.group})
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def run_once(self) -> int:
        """Handle at most one batch: own pending, then idle entries of dead consumers, then new."""
        if not self._group_ready:
            self.ensure_group()
        if self._pending_cursor is not None:
            entries = self._read(self._pending_cursor)
            if entries:
                # Walk forward through our pending list, so an entry that keeps failing
                # is left to XAUTOCLAIM and does not hold back the entries behind it.
                self._pending_cursor = _text(entries[-1][0])
                return self._handle(entries)
            self._pending_cursor = None
        claimed = self._claim_idle()
        if claimed:
            return self._handle(claimed)
        self._forget_idle_consumers()
        return self._handle(self._read(">"))

    def run_forever(self, stop: threading.Event) -> None:
        """Run batches until `stop` is set, riding out Redis restarts and a lost group."""
        backoff = 0.0
        next_beat = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_beat:
                from alfred.operations import exporter

                exporter.beat("outbox")
                next_beat = time.monotonic() + HEARTBEAT_EVERY_S
            try:
                self.run_once()
                if not self.enqueue_failures:
                    backoff = 0.0
                    continue
                # The sender's broker is likely down: wait before trying the next batch.
                log.warning("outbox.enqueue_unavailable", extra={"failures": self.enqueue_failures})
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                metrics.OUTBOX_RECONNECTS.labels("connection").inc()
                log.warning("outbox.redis_unavailable", extra={"error": str(exc)})
                # Whatever we read but could not ack is still ours: read it again first.
                self._pending_cursor = "0"
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("outbox.redis_error")
                else:
                    # Redis came back without our stream or group (no persistence, or
                    # someone deleted it): recreate it at 0 so nothing added since is missed.
                    metrics.OUTBOX_RECONNECTS.labels("nogroup").inc()
                    log.warning("outbox.group_missing", extra={"group": self.group})
                    self._group_ready = False
                    self._pending_cursor = "0"
                    self._claim_cursor = "0-0"
                    continue
            except Exception:
                # A bug or a failing reject must not end the process; the entry stays pending.
                log.exception("outbox.batch_failed")
            backoff = min(self.max_backoff_s, max(0.1, backoff * 2))
            stop.wait(backoff)

    def _read(self, last_id: str) -> list[tuple]:
        # An id other than ">" reads this consumer's own pending list, which never blocks.
        block = self.block_ms if last_id == ">" else None
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: last_id}, count=self.batch, block=block
        )
        return [entry for _, entries in reply or [] for entry in entries]

    def _claim_idle(self) -> list[tuple]:
        # A scan that found nothing is repeated only now and then; a scan that stopped
        # half-way (cursor not back at 0-0) goes on at once.
        now = time.monotonic()
        if self._claim_cursor == "0-0" and now < self._next_claim_scan:
            return []
        reply = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.batch,
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []  # Redis 7 lists trimmed entries apart
        self._claim_cursor = _text(cursor)
        if self._claim_cursor == "0-0":
            self._next_claim_scan = now + min(5.0, max(0.05, self.claim_idle_ms / 2000))
        # Entries trimmed from the stream while pending: XAUTOCLAIM drops them from the
        # pending list, so report them here or they would vanish without a word.
        for entry_id in deleted or []:
            self._reject(_text(entry_id), {}, TRIMMED)
        if entries:
            metrics.OUTBOX_CLAIMED.inc(len(entries))
            log.info("outbox.claimed", extra={"consumer": self.consumer, "count": len(entries)})
        return entries

    def _handle(self, entries: list[tuple]) -> int:
        handled = failures = 0
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if not fields:
                # Read back from our pending list after the stream was trimmed under it
                # (XADD needs a field, so only a deleted entry comes back empty).
                self._reject(entry_id, {}, TRIMMED)
                self.client.xack(self.stream, self.group, entry_id)
                handled += 1
                continue
            try:
                message = message_from_entry(entry_id, fields)
            except ValueError as exc:
                self._reject(entry_id, fields, str(exc))
                self.client.xack(self.stream, self.group, entry_id)
                handled += 1
                continue
            try:
                self.enqueue(message)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except BacklogFull as exc:
                # Back-pressure: the senders are behind. The rest of the batch would be refused
                # too: stop, back off, and read our own pending entries again first (not only
                # after claim_idle_ms). The stream holds what waits.
                metrics.OUTBOX_ENTRIES.labels("backlog_full").inc()
                log.warning("outbox.backlog_full", extra={"entry_id": entry_id, "limit": exc.limit})
                self._pending_cursor = "0"
                failures = max(failures, 1)
                break
            except Exception:
                # Not acked: the entry stays pending and is claimed again once idle.
                metrics.OUTBOX_ENTRIES.labels("enqueue_failed").inc()
                log.exception("outbox.enqueue_failed", extra={"entry_id": entry_id})
                failures += 1
                if failures >= MAX_FAILURES_PER_BATCH:
                    break
                continue
            self.client.xack(self.stream, self.group, entry_id)
            metrics.OUTBOX_ENTRIES.labels("enqueued").inc()
            handled += 1
        self.enqueue_failures = failures
        return handled

    def _reject(self, entry_id: str, fields: dict, reason: str) -> None:
        log.warning("outbox.rejected", extra={"entry_id": entry_id, "reason": reason})
        self.reject(entry_id, fields, reason)
        metrics.OUTBOX_ENTRIES.labels("rejected").inc()

    def _forget_idle_consumers(self) -> None:
        if time.monotonic() < self._next_forget:
            return
        self._next_forget = time.monotonic() + FORGET_EVERY_S
        for info in self.client.xinfo_consumers(self.stream, self.group):
            name = _text(info["name"])
            if (
                name != self.consumer
                and info["pending"] == 0
                and info["idle"] > FORGET_CONSUMER_AFTER_MS
            ):
                # Nothing pending, so nothing is lost; a live one is recreated on its next read.
                self.client.xgroup_delconsumer(self.stream, self.group, name)


def run_bridge(stop: threading.Event | None = None) -> None:
    """Run the real bridge until SIGTERM, SIGINT or `stop`, sending through Celery."""
    configure_logging()
    from alfred.operations import exporter

    # The bridge's loop heartbeats itself (run_forever): alive means reading, not just running.
    exporter.start("outbox", heartbeat=False)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    bridge = OutboxBridge(
        runtime.redis_client(),
        enqueue=lambda m: send_message.apply_async(args=[m]),
        reject=lambda entry, fields, reason: sender().reject_unreadable(entry, fields, reason),
    )
    log.info("outbox.started", extra={"consumer": bridge.consumer, "stream": bridge.stream})
    bridge.run_forever(stop)
    log.info("outbox.stopped", extra={"consumer": bridge.consumer})
