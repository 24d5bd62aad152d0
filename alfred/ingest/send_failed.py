"""A `failed` status webhook tells the orchestrator, as `send_failed`, which message died."""

from __future__ import annotations

from sqlalchemy.orm import Session

from alfred.envelope import send_failed_envelope
from alfred.messages.store import outbound_for_wamid
from alfred.streams import InboundEvent


def send_failed_for_status(session: Session, status: InboundEvent) -> InboundEvent:
    """Build the send_failed event for a failed status, keyed by the message's idempotency key."""
    envelope = status.envelope
    record = outbound_for_wamid(session, status.tenant_id, status.id)
    # Parts of a long text carry "key#i/n"; the orchestrator knows the message by its key.
    callback = str(envelope.get("biz_opaque_callback_data") or "").split("#", 1)[0]
    key = callback or (record.idempotency_key if record is not None else None) or status.id
    message = dict(record.payload or {}) if record is not None else {}
    message.setdefault("to", envelope.get("recipient_id"))
    message.setdefault("recipient", envelope.get("recipient_user_id"))
    failed = send_failed_envelope(
        message,
        tenant_id=status.tenant_id,
        idempotency_key=key,
        phone_number_id=envelope.get("phone_number_id"),
        errors=envelope.get("errors") or [],
        failed_at=envelope.get("received_at") or float(status.timestamp),
    )
    failed["wamid"] = status.id
    failed["timestamp"] = status.timestamp
    return InboundEvent(
        tenant_id=status.tenant_id,
        event="send_failed",
        id=key,
        dedupe_key=key,
        timestamp=status.timestamp,
        envelope=failed,
    )
