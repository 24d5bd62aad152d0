"""Send one outbound message: validate, check the window, pace, call Meta once, record it all."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis

from alfred import metrics
from alfred.config import Settings, Tenant
from alfred.db import session_scope
from alfred.outbound import records
from alfred.outbound.hold import IN_DOUBT_GRACE_S, Hold, Holds
from alfred.outbound.journal import entry_id, outbound_journal
from alfred.outbound.ratelimit import SendLimiter, refused
from alfred.outbound.split import split_text
from alfred.outbound.tier import TierMeter
from alfred.outbound.window import needs_window, open_in_record, recipient_keys, window_key
from alfred.streams import SENT_TTL_S, final_key, sent_key
from alfred.tokens.store import current_token, forget
from alfred.whatsapp.errors import GraphError
from alfred.whatsapp.graph import GraphClient
from alfred.whatsapp.messages import InvalidMessage, validate_message

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 8
BACKOFF_CAP_S = 300.0
TEXT_LIMIT = 4096
# Waits shorter than this are slept inside the task instead of a round trip through the broker.
INLINE_WAIT_S = 0.5


@dataclass
class SendOutcome:
    """What became of one send_message run."""

    status: str  # sent | duplicate | retry | failed | dead_lettered | invalid
    retry_in: float = 0.0
    reason: str | None = None
    wamids: list[str] = field(default_factory=list)
    attempts_made: int | None = None  # set when a call failed: the retry carries the count


def stamp(message: dict) -> dict:
    """Fix the idempotency key and the enqueue time, once, when the message is enqueued."""
    if message.get("idempotency_key") and message.get("enqueued_at"):
        return message
    stamped = dict(message)
    stamped.setdefault("idempotency_key", uuid.uuid4().hex)
    stamped.setdefault("enqueued_at", time.time())
    return stamped


def backoff(attempt: int, floor: float | None = None) -> float:
    """Return Meta's 4^X back-off with jitter, capped, never below the error's own floor."""
    ceiling = min(BACKOFF_CAP_S, 4.0 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, floor or 0.0)


def within_inline_wait(attempt: Callable[[], tuple[float, T]]) -> tuple[float, T]:
    """Call `attempt` until it needs no wait, sleeping its short waits; return the last answer.

    `attempt` returns (0, result) once it got what it asked for, else (how long to wait,
    result). Waits that end within INLINE_WAIT_S are slept here; a longer one is returned,
    for a Celery retry.
    """
    deadline = time.monotonic() + INLINE_WAIT_S
    while True:  # bounded by the deadline
        wait, result = attempt()
        if not wait or time.monotonic() + wait > deadline:
            return wait, result
        time.sleep(wait)


class Sender:
    """Everything one send needs, built once per worker process."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: redis.Redis,
        graph: GraphClient,
        limiter: SendLimiter,
        tier: TierMeter,
        chunk_order: str = "accepted",
        publish_audit: Callable[[], object] = lambda: None,
    ):
        self.settings = settings
        self.client = client
        self.graph = graph
        self.limiter = limiter
        self.tier = tier
        self.chunk_order = chunk_order
        self.journal = outbound_journal(client)
        self.holds = Holds(client)
        # Called when an accepted call is the first waiting to be written: it publishes the
        # task that writes the batch (alfred/outbound/audit.py).
        self.publish_audit = publish_audit

    def send(self, message: object) -> SendOutcome:
        """Send a message once, or say when to try again, or record why it never will be."""
        if not isinstance(message, dict):
            return self._refuse({"raw": message}, "invalid_message", {"_schema": ["not an object"]})
        tenant = self.settings.tenants.get(str(message.get("tenant_id")))
        if tenant is None:
            return self._refuse(
                message,
                "unknown_tenant",
                {"tenant_id": [f"unknown tenant {message.get('tenant_id')!r}"]},
            )
        try:
            body = self._validate(message)
        except InvalidMessage as exc:
            return self._refuse(message, exc.reason, exc.errors)
        key = str(message["idempotency_key"])
        parts = self._parts(body, key)
        tid = tenant.tenant_id
        names = recipient_keys(message)
        recipient = (names or ["?"])[0]  # the pacing key: phone number first, else BSUID
        windows = [window_key(tid, name) for name in names] if needs_window(message) else []
        hold = Hold(
            lock=f"alfred:sending:{tid}:{key}",
            marker=f"alfred:calling:{tid}:{key}",
            token=uuid.uuid4().hex,
        )
        slot = self.limiter.slot(
            phone_number_id=tenant.phone_number_id,
            mps=tenant.mps,
            recipient_key=recipient,
        )

        def take() -> tuple[float, list]:
            now = time.time()
            state, *detail = self.holds.take(
                hold,
                final_key=final_key(tid, key),
                sent_keys=[sent_key(tid, k) for k, _ in parts],
                window_keys=windows,
                slot=slot,
                take_slot=len(parts) == 1,
                now=now,
            )
            wait = refused(tid, *detail).retry_after_s if state == b"paced" else 0.0
            return wait, [now, state, *detail]

        wait, answer = within_inline_wait(take)
        if wait:
            return SendOutcome("retry", retry_in=wait, reason="paced")
        now, state, detail = answer
        if state == b"final":
            return self._replay_final(tenant, message, json.loads(detail))
        if state == b"duplicate":
            return self._duplicate(tenant, message, detail.decode())
        if state == b"busy":
            return SendOutcome("retry", retry_in=2.0, reason="in_flight_elsewhere")
        outcome: SendOutcome | None = None
        try:
            if state == b"in_doubt":
                # An earlier attempt died calling Meta: it may have been accepted. Its status
                # webhook, if any, marks the key sent within the grace; look again soon.
                doubt = min(max(float(detail) + IN_DOUBT_GRACE_S - now, 0.1), 5.0)
                outcome = SendOutcome("retry", retry_in=doubt, reason="in_doubt")
                return outcome
            slot_taken = state == b"go" and detail == b"1"
            if state == b"window_unknown":
                if open_in_record(self.settings.database_url, self.client, tid, names, now):
                    self.holds.raise_marker(hold, now)
                else:
                    outcome = self._finish_failed(
                        tenant,
                        message,
                        reason="outside_customer_service_window",
                        errors=[
                            {
                                "code": 131047,
                                "title": "Re-engagement message",
                                "message": "More than 24 hours since the user last wrote: "
                                "send a template.",
                            }
                        ],
                        status="failed",
                    )
                    return outcome
            outcome = self._send_parts(tenant, message, parts, hold, recipient, slot_taken)
            return outcome
        finally:
            # An answer that never came keeps the marker: the retry must wait for the grace.
            doubtful = outcome.reason in ("in_doubt", "no_answer") if outcome else hold.calling
            if not hold.released:
                done = outcome is not None and outcome.status == "sent"
                self.holds.release(hold, doubtful=doubtful, entry=entry_id(message) if done else "")

    def _duplicate(self, tenant: Tenant, message: dict, wamid: str) -> SendOutcome:
        """Every part is marked sent: record the acceptance if a crash skipped it, send nothing."""
        with session_scope(self.settings.database_url) as session:
            records.accepted_before(session, tenant.tenant_id, message, wamid)
        self.journal.done(entry_id(message))
        metrics.SENDS.labels(tenant.tenant_id, "duplicate").inc()
        return SendOutcome("duplicate", wamids=[wamid])

    @staticmethod
    def _validate(message: dict) -> dict:
        """Validate, letting a text run past Meta's limit: it is split into parts instead."""
        text = message.get("text") if message.get("type", "text") == "text" else None
        full = text.get("body") if isinstance(text, dict) else None
        if not isinstance(full, str) or len(full) <= TEXT_LIMIT:
            return validate_message(message)
        body = validate_message({**message, "text": {**text, "body": full[:TEXT_LIMIT]}})
        body["text"] = {**body["text"], "body": full}
        return body

    def _parts(self, body: dict, key: str) -> list[tuple[str, dict]]:
        text = body.get("text", {}).get("body") if body.get("type") == "text" else None
        if text is None or len(text) <= TEXT_LIMIT:
            return [(key, {**body, "biz_opaque_callback_data": key})]
        chunks = split_text(text, TEXT_LIMIT)
        return [
            (
                f"{key}#{i + 1}/{len(chunks)}",
                {
                    **body,
                    "text": {**body["text"], "body": chunk},
                    "biz_opaque_callback_data": f"{key}#{i + 1}/{len(chunks)}",
                },
            )
            for i, chunk in enumerate(chunks)
        ]

    def _send_parts(
        self,
        tenant: Tenant,
        message: dict,
        parts,
        hold: Hold,
        recipient: str,
        slot_taken: bool,
    ) -> SendOutcome:
        wamids: list[str] = []
        tid = tenant.tenant_id
        previous: str | None = None
        # Calls recorded before this run: the task carries the count (see _after_error).
        attempt = int(message.get("attempts_made") or 0)
        for index, (part_key, body) in enumerate(parts):
            # The take script saw a single part unsent and holds the lock: no need to look.
            already = self.client.get(sent_key(tid, part_key)) if len(parts) > 1 else None
            if already:
                previous = already.decode()
                wamids.append(previous)
                continue
            if (
                previous
                and self.chunk_order == "delivered"
                and not records.delivered(self.settings.database_url, tid, previous)
            ):
                return SendOutcome(
                    "retry", retry_in=2.0, reason="awaiting_delivery_of_previous_part"
                )
            # A single part's slot was taken by the take script.
            wait = 0.0 if slot_taken else self._reserve(tenant, recipient)
            slot_taken = False
            if wait:
                return SendOutcome("retry", retry_in=wait, reason="paced")
            lag = time.time() - float(message.get("enqueued_at") or time.time())
            metrics.SEND_LAG.labels(tid).observe(max(0.0, lag))
            attempt += 1
            call_id = uuid.uuid4().hex
            started = time.perf_counter()
            hold.calling = True
            try:
                result = self.graph.send_message(
                    tenant.phone_number_id, current_token(tenant, self.settings), body
                )
            except GraphError as exc:
                hold.calling = False
                elapsed = time.perf_counter() - started
                return self._after_error(tenant, message, body, exc, attempt, elapsed, call_id)
            elapsed = time.perf_counter() - started
            audit = records.accepted_call(
                tid, message, body, result, attempt=attempt, elapsed=elapsed, call_id=call_id
            )
            # Record the success before anything else: a crash between Meta's answer and this
            # script is the only window in which a re-drive would send twice (docs/outbound.md).
            waiting = self.holds.accepted(
                hold,
                sent_key=sent_key(tid, part_key),
                wamid=result.wamid,
                call_id=call_id,
                record=json.dumps(audit, ensure_ascii=False, default=str),
                entry=entry_id(message) if index == len(parts) - 1 else "",
            )
            hold.calling = False
            if waiting == 1:
                self.publish_audit()
            metrics.SEND_SECONDS.labels(tid).observe(elapsed)
            metrics.SEND_ATTEMPTS.labels(tid, "ok").inc()
            previous = result.wamid
            wamids.append(result.wamid)
        if message.get("type") == "template":
            self.tier.record(tid, recipient)
        metrics.SENDS.labels(tid, "sent").inc()
        return SendOutcome("sent", wamids=wamids)

    def _reserve(self, tenant: Tenant, recipient: str) -> float:
        def reserve() -> tuple[float, None]:
            slot = self.limiter.reserve(
                tenant_id=tenant.tenant_id,
                phone_number_id=tenant.phone_number_id,
                mps=tenant.mps,
                recipient_key=recipient,
            )
            return slot.retry_after_s, None

        return within_inline_wait(reserve)[0]

    def _after_error(
        self,
        tenant: Tenant,
        message: dict,
        body: dict,
        exc: GraphError,
        attempt: int,
        elapsed: float,
        call_id: str,
    ) -> SendOutcome:
        metrics.SEND_ATTEMPTS.labels(tenant.tenant_id, exc.reason).inc()
        with session_scope(self.settings.database_url) as session:
            records.attempt_failed(
                session,
                tenant.tenant_id,
                message,
                body,
                exc,
                attempt=attempt,
                elapsed=elapsed,
                call_id=call_id,
            )
        log.warning(
            "send.attempt_failed",
            extra={
                "tenant_id": tenant.tenant_id,
                "idempotency_key": message.get("idempotency_key"),
                "attempt": attempt,
                "code": exc.code,
                "reason": exc.reason,
                "retryable": exc.retryable,
            },
        )
        if exc.refresh_token:
            # A rotated token may already be stored: read it again before the next try.
            forget(tenant.tenant_id)
        retryable = exc.retryable or (exc.refresh_token and attempt < 2)
        if not retryable:
            return self._finish_failed(
                tenant, message, reason=exc.reason, errors=[exc.as_record()], status="failed"
            )
        if attempt >= MAX_ATTEMPTS:
            return self._finish_failed(
                tenant, message, reason=exc.reason, errors=[exc.as_record()], status="dead_lettered"
            )
        if exc.may_have_been_delivered:
            return SendOutcome(
                "retry",
                retry_in=max(backoff(attempt, exc.min_retry_delay_s), 5.0),
                reason="no_answer",
                attempts_made=attempt,
            )
        return SendOutcome(
            "retry",
            retry_in=backoff(attempt, exc.min_retry_delay_s),
            reason=exc.reason,
            attempts_made=attempt,
        )

    def _finish_failed(
        self, tenant: Tenant, message: dict, *, reason: str, errors: list[dict], status: str
    ) -> SendOutcome:
        # The decision goes to Redis first, where the next run of this message looks: a crash
        # before the rest is done leaves a re-drive that completes it, and never sends.
        decision = {"status": status, "reason": reason, "errors": errors}
        self.client.set(
            final_key(tenant.tenant_id, str(message["idempotency_key"])),
            json.dumps(decision, default=str),
            ex=SENT_TTL_S,
        )
        outcome = self._record_final(tenant, message, decision)
        metrics.SENDS.labels(tenant.tenant_id, status).inc()
        log.warning(
            "send.failed",
            extra={
                "tenant_id": tenant.tenant_id,
                "reason": reason,
                "status": status,
                "idempotency_key": message.get("idempotency_key"),
            },
        )
        return outcome

    def _replay_final(self, tenant: Tenant, message: dict, decision: dict) -> SendOutcome:
        """Decided before (a re-driven or duplicated task): finish recording it, send nothing.

        Only `python -m alfred dlq replay` reopens a decided message.
        """
        outcome = self._record_final(tenant, message, decision)
        return SendOutcome(outcome.status, reason="already_final")

    def _record_final(self, tenant: Tenant, message: dict, decision: dict) -> SendOutcome:
        """Write the decision to the row, tell the orchestrator once, forget the journal entry."""
        status, reason, errors = decision["status"], decision["reason"], decision["errors"]
        with session_scope(self.settings.database_url) as session:
            records.mark_failed(
                session, tenant.tenant_id, message, reason=reason, errors=errors, status=status
            )
        records.emit_send_failed(
            self.client,
            tenant.tenant_id,
            tenant.phone_number_id,
            message,
            errors=errors,
            reason=reason,
        )
        self.journal.done(entry_id(message))
        return SendOutcome(status, reason=reason)

    def _refuse(self, message: dict, reason: str, errors: dict) -> SendOutcome:
        """Record an invalid message with its reason; no HTTP call is made."""
        tenant_id = str(message.get("tenant_id") or "")
        message = (
            message
            if message.get("idempotency_key")
            else {**message, "idempotency_key": uuid.uuid4().hex}
        )
        detail = [
            {"code": None, "reason": reason, "message": json.dumps(errors, default=str)[:2000]}
        ]
        with session_scope(self.settings.database_url) as session:
            records.mark_failed(
                session, tenant_id, message, reason=reason, errors=detail, status="invalid"
            )
        tenant = self.settings.tenants.get(tenant_id)
        records.emit_send_failed(
            self.client,
            tenant_id,
            tenant.phone_number_id if tenant else None,
            message,
            errors=detail,
            reason=reason,
        )
        self.journal.done(entry_id(message))
        metrics.SENDS.labels(tenant_id or "unknown", "invalid").inc()
        log.warning(
            "send.invalid", extra={"tenant_id": tenant_id, "reason": reason, "errors": errors}
        )
        return SendOutcome("invalid", reason=reason)


def reject_unreadable(entry: str, fields: dict, reason: str) -> None:
    """Record an «alfred-outbox» entry that is not a message at all, and tell the orchestrator."""
    from alfred.outbound.tasks import sender

    raw = {
        k.decode() if isinstance(k, bytes) else k: v.decode("utf-8", "replace")
        if isinstance(v, bytes)
        else v
        for k, v in fields.items()
    }
    message = {
        "tenant_id": raw.get("tenant_id", ""),
        "idempotency_key": f"outbox:{entry}",
        "outbox_entry": entry,
        "raw": raw,
    }
    sender()._refuse(message, "unreadable_outbox_entry", {"payload": [reason]})
