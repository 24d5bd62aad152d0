"""Send one outbound message in four named steps: validate, take, call, record.

validate refuses what Meta would refuse; take is one Redis script (the lock, the window's copy,
the pacing slot, the "calling Meta" marker); call sends part by part; record writes whatever
came of it. docs/outbound.md follows a send through them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

import redis

from alfred import metrics
from alfred.config import Settings, Tenant
from alfred.db import session_scope
from alfred.messages import audit, store
from alfred.outbound import final
from alfred.outbound.hold import IN_DOUBT_GRACE_S, Hold, Holds
from alfred.outbound.pending import entry_id, outbound_journal
from alfred.outbound.plan import Plan, SendOutcome
from alfred.outbound.ratelimit import SendLimiter, refused
from alfred.outbound.retry import retry_in, within_inline_wait
from alfred.outbound.split import parts_of, validate_long
from alfred.outbound.tier import TierMeter
from alfred.streams import final_key, sent_key
from alfred.tokens.store import current_token, forget
from alfred.tokens.suspect import MAX_WAIT_S, mark_suspect
from alfred.whatsapp.errors import GraphError
from alfred.whatsapp.graph import GraphClient
from alfred.whatsapp.messages import InvalidMessage
from alfred.windows import needs_window, open_in_record, recipient_keys, window_key

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Meta's own error for it, which we answer without a call.
OUTSIDE_WINDOW = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "More than 24 hours since the user last wrote: send a template.",
}


def stamp(message: dict) -> dict:
    """Fix the idempotency key and the enqueue time, once, when the message is enqueued."""
    if message.get("idempotency_key") and message.get("enqueued_at"):
        return message
    stamped = dict(message)
    stamped.setdefault("idempotency_key", uuid.uuid4().hex)
    stamped.setdefault("enqueued_at", time.time())
    return stamped


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
        request_rotation: Callable[[str], object] = lambda tenant_id: None,
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
        # task that writes the batch (alfred/outbound/audit_batch.py).
        self.publish_audit = publish_audit
        # Called when Meta refused the tenant's token (190): it asks for a rotation.
        self.request_rotation = request_rotation

    def send(self, message: object) -> SendOutcome:
        """Send a message once, or say when to try again, or record why it never will be."""
        plan = self.validate(message)
        if isinstance(plan, SendOutcome):
            return plan
        wait, answer = within_inline_wait(lambda: self.take(plan))
        if wait:
            return SendOutcome("retry", retry_in=wait, reason="paced")
        now, state, detail = answer
        if state == b"final":
            return self._replay_final(plan.tenant, plan.message, json.loads(detail))
        if state == b"duplicate":
            return self._duplicate(plan.tenant, plan.message, detail.decode())
        if state == b"busy":
            return SendOutcome("retry", retry_in=2.0, reason="in_flight_elsewhere")
        outcome: SendOutcome | None = None
        try:
            outcome = self._go(plan, state, detail, now)
            return outcome
        finally:
            self._let_go(plan, outcome)

    def validate(self, message: object) -> Plan | SendOutcome:
        """Step 1: refuse (and record) what Meta would refuse; else plan the send."""
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
            body = validate_long(message)
        except InvalidMessage as exc:
            return self._refuse(message, exc.reason, exc.errors)
        key = str(message["idempotency_key"])
        tid = tenant.tenant_id
        names = recipient_keys(message)
        recipient = (names or ["?"])[0]
        return Plan(
            tenant=tenant,
            message=message,
            parts=parts_of(body, key),
            names=names,
            recipient=recipient,
            windows=[window_key(tid, n) for n in names] if needs_window(message) else [],
            slot=self.limiter.slot(
                phone_number_id=tenant.phone_number_id, mps=tenant.mps, recipient_key=recipient
            ),
            hold=Hold(
                lock=f"alfred:sending:{tid}:{key}",
                marker=f"alfred:calling:{tid}:{key}",
                token=uuid.uuid4().hex,
            ),
        )

    def take(self, plan: Plan) -> tuple[float, list]:
        """Step 2: one script: decided or sent already? Else the lock, window, slot, marker.

        Return how long to wait (0 when taken) and [now, state, *detail].
        """
        tid, key = plan.tenant.tenant_id, str(plan.message["idempotency_key"])
        now = time.time()
        state, *detail = self.holds.take(
            plan.hold,
            final_key=final_key(tid, key),
            sent_keys=[sent_key(tid, k) for k, _ in plan.parts],
            window_keys=plan.windows,
            slot=plan.slot,
            take_slot=len(plan.parts) == 1,
            now=now,
        )
        wait = refused(tid, *detail).retry_after_s if state == b"paced" else 0.0
        return wait, [now, state, *detail]

    def _go(self, plan: Plan, state: bytes, detail, now: float) -> SendOutcome:
        """With the lock taken: wait out a doubt, find the window in the record, or call."""
        if state == b"in_doubt":
            # An earlier attempt died calling Meta: it may have been accepted. Its status
            # webhook, if any, marks the key sent within the grace; look again soon.
            doubt = min(max(float(detail) + IN_DOUBT_GRACE_S - now, 0.1), 5.0)
            return SendOutcome("retry", retry_in=doubt, reason="in_doubt")
        tid = plan.tenant.tenant_id
        if state == b"window_unknown":
            if not open_in_record(self.settings.database_url, self.client, tid, plan.names, now):
                return self._finish_failed(
                    plan.tenant,
                    plan.message,
                    reason="outside_customer_service_window",
                    errors=[OUTSIDE_WINDOW],
                    status="failed",
                )
            self.holds.raise_marker(plan.hold, now)
        return self.call(plan, slot_taken=state == b"go" and detail == b"1")

    def _let_go(self, plan: Plan, outcome: SendOutcome | None) -> None:
        """Release the hold the take step took, unless the accepted script already did."""
        hold = plan.hold
        # An answer that never came keeps the marker: the retry must wait for the grace.
        doubtful = outcome.reason in ("in_doubt", "no_answer") if outcome else hold.calling
        if not hold.released:
            done = outcome is not None and outcome.status == "sent"
            self.holds.release(
                hold, doubtful=doubtful, entry=entry_id(plan.message) if done else ""
            )

    def _duplicate(self, tenant: Tenant, message: dict, wamid: str) -> SendOutcome:
        """Every part is marked sent: record the acceptance if a crash skipped it, send nothing."""
        with session_scope(self.settings.database_url) as session:
            audit.accepted_before(session, tenant.tenant_id, message, wamid)
        self.journal.done(entry_id(message))
        metrics.SENDS.labels(tenant.tenant_id, "duplicate").inc()
        return SendOutcome("duplicate", wamids=[wamid])

    def call(self, plan: Plan, *, slot_taken: bool) -> SendOutcome:
        """Step 3: call Meta for each part not yet sent, recording each answer as it comes."""
        tenant, message, parts, hold = plan.tenant, plan.message, plan.parts, plan.hold
        recipient = plan.recipient
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
                and not store.delivered(self.settings.database_url, tid, previous)
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
            token = current_token(tenant, self.settings)
            try:
                result = self.graph.send_message(tenant.phone_number_id, token, body)
            except GraphError as exc:
                hold.calling = False
                elapsed = time.perf_counter() - started
                if exc.refresh_token and exc.code in (190, None):  # expired, not a lack of rights
                    self._record_error(tenant, message, body, exc, attempt, elapsed, call_id)
                    return self._await_token(tenant, message, token, attempt)
                return self._after_error(tenant, message, body, exc, attempt, elapsed, call_id)
            elapsed = time.perf_counter() - started
            record = audit.accepted_call(
                tid, message, body, result, attempt=attempt, elapsed=elapsed, call_id=call_id
            )
            # Record the success before anything else: a crash between Meta's answer and this
            # script is the only window in which a re-drive would send twice (docs/outbound.md).
            waiting = self.holds.accepted(
                hold,
                sent_key=sent_key(tid, part_key),
                wamid=result.wamid,
                call_id=call_id,
                record=json.dumps(record, ensure_ascii=False, default=str),
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

    def _await_token(self, tenant: Tenant, message: dict, used, attempt: int) -> SendOutcome:
        """Meta refused the token (190): wait for a rotation instead of failing the message.

        The call does not count against the message's attempts. Past MAX_WAIT_S without a
        working token the message is dead-lettered with the reason, replayable (`dlq replay`).
        """
        tid = tenant.tenant_id
        forget(tid)
        if current_token(tenant, self.settings) != used:
            # Another process swapped a new token in meanwhile: go again with it, at once.
            return SendOutcome(
                "retry", retry_in=0.1, reason="token_rotated", attempts_made=attempt - 1
            )
        since = mark_suspect(self.client, tid)
        self.request_rotation(tid)
        waited = time.time() - since
        if waited >= MAX_WAIT_S:
            record = {"code": 190, "reason": "access_token_expired", "retryable": True,
                      "message": f"no working token for {waited:.0f} s"}  # fmt: skip
            return self._finish_failed(
                tenant, message, reason="access_token_expired", errors=[record],
                status="dead_lettered",
            )  # fmt: skip
        # Soon at first (a rotation takes a second or two), then less often, up to 30 s.
        retry_in = min(30.0, max(0.5, waited / 4))
        return SendOutcome(
            "retry", retry_in=retry_in, reason="awaiting_token", attempts_made=attempt - 1
        )

    def _record_error(
        self,
        tenant: Tenant,
        message: dict,
        body: dict,
        exc: GraphError,
        attempt: int,
        elapsed: float,
        call_id: str,
    ) -> None:
        """Count, store and log one failed call."""
        metrics.SEND_ATTEMPTS.labels(tenant.tenant_id, exc.reason).inc()
        metrics.SEND_ERRORS.labels(
            tenant.tenant_id, str(exc.code or exc.http_status or "none")
        ).inc()
        with session_scope(self.settings.database_url) as session:
            audit.attempt_failed(
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
        self._record_error(tenant, message, body, exc, attempt, elapsed, call_id)
        if not exc.retryable:
            return self._finish_failed(
                tenant, message, reason=exc.reason, errors=[exc.as_record()], status="failed"
            )
        if attempt >= MAX_ATTEMPTS:
            return self._finish_failed(
                tenant, message, reason=exc.reason, errors=[exc.as_record()], status="dead_lettered"
            )
        reason = "no_answer" if exc.may_have_been_delivered else exc.reason
        metrics.SEND_RETRIES.labels(tenant.tenant_id, reason).inc()
        return SendOutcome(
            "retry", retry_in=retry_in(exc, attempt), reason=reason, attempts_made=attempt
        )

    def _finish_failed(
        self, tenant: Tenant, message: dict, *, reason: str, errors: list[dict], status: str
    ) -> SendOutcome:
        decision = {"status": status, "reason": reason, "errors": errors}
        final.decide(self.client, tenant.tenant_id, str(message["idempotency_key"]), decision)
        outcome = self.record(tenant, message, decision)
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

    def dead_letter(self, message: dict, *, reason: str, errors: list[dict]) -> SendOutcome:
        """Give up on a message for good (alfred/outbound/poison.py), telling the orchestrator."""
        tenant = self.settings.tenants.get(str(message.get("tenant_id")))
        if tenant is None:
            return self._refuse(message, reason, {"_schema": [e["message"] for e in errors]})
        return self._finish_failed(
            tenant, message, reason=reason, errors=errors, status="dead_lettered"
        )

    def _replay_final(self, tenant: Tenant, message: dict, decision: dict) -> SendOutcome:
        """Decided before (a re-driven or duplicated task): finish recording it, send nothing.

        Only `python -m alfred dlq replay` reopens a decided message.
        """
        outcome = self.record(tenant, message, decision)
        return SendOutcome(outcome.status, reason="already_final")

    def record(self, tenant: Tenant, message: dict, decision: dict) -> SendOutcome:
        """Step 4: write the decision to the row, tell the orchestrator once, forget the entry."""
        status, reason, errors = decision["status"], decision["reason"], decision["errors"]
        final.record_final(
            self.settings.database_url,
            self.client,
            tenant.tenant_id,
            tenant.phone_number_id,
            message,
            status=status,
            reason=reason,
            errors=errors,
        )
        self.journal.done(entry_id(message))
        return SendOutcome(status, reason=reason)

    def reject_unreadable(self, entry: str, fields: dict, reason: str) -> None:
        """Record an «alfred-outbox» entry that is not a message at all; tell the orchestrator."""
        self._refuse(final.unreadable_entry(entry, fields), "unreadable_outbox_entry",
                     {"payload": [reason]})  # fmt: skip

    def _refuse(self, message: dict, reason: str, errors: dict) -> SendOutcome:
        """Record an invalid message with its reason; no HTTP call is made."""
        tenant_id = str(message.get("tenant_id") or "")
        if not message.get("idempotency_key"):
            message = {**message, "idempotency_key": uuid.uuid4().hex}
        detail = [
            {"code": None, "reason": reason, "message": json.dumps(errors, default=str)[:2000]}
        ]
        tenant = self.settings.tenants.get(tenant_id)
        final.record_final(
            self.settings.database_url,
            self.client,
            tenant_id,
            tenant.phone_number_id if tenant else None,
            message,
            status="invalid",
            reason=reason,
            errors=detail,
        )
        self.journal.done(entry_id(message))
        metrics.SENDS.labels(tenant_id or "unknown", "invalid").inc()
        log.warning(
            "send.invalid", extra={"tenant_id": tenant_id, "reason": reason, "errors": errors}
        )
        return SendOutcome("invalid", reason=reason)
