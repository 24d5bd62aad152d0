"""A message's final outcome: written to its row, and told to the orchestrator once."""

from __future__ import annotations

import json
import time

import redis

from alfred.db import session_scope
from alfred.envelope import send_failed_envelope
from alfred.messages import audit
from alfred.streams import SENT_TTL_S, InboundEvent, append_events, final_key


def decide(client: redis.Redis, tenant_id: str, key: str, decision: dict) -> None:
    """Keep the decision in Redis, where the next run of this message looks first.

    A crash before the rest is recorded leaves a re-drive that completes it, and never sends.
    """
    client.set(final_key(tenant_id, key), json.dumps(decision, default=str), ex=SENT_TTL_S)


def record_final(
    database_url: str,
    client: redis.Redis,
    tenant_id: str,
    phone_number_id: str | None,
    message: dict,
    *,
    status: str,
    reason: str,
    errors: list[dict],
) -> None:
    """Write the outcome to the message's row, then emit its send_failed event (once)."""
    with session_scope(database_url) as session:
        audit.mark_failed(session, tenant_id, message, reason=reason, errors=errors, status=status)
    emit_send_failed(client, tenant_id, phone_number_id, message, errors=errors, reason=reason)


def emit_send_failed(
    client: redis.Redis,
    tenant_id: str,
    phone_number_id: str | None,
    message: dict,
    *,
    errors: list[dict],
    reason: str,
) -> None:
    """Tell the orchestrator, once per message, that it will not be delivered."""
    key = str(message.get("idempotency_key"))
    envelope = send_failed_envelope(
        audit.redact(message),
        tenant_id=tenant_id,
        idempotency_key=key,
        phone_number_id=phone_number_id,
        errors=errors,
        failed_at=time.time(),
    )
    envelope["reason"] = reason
    append_events(
        client,
        [
            InboundEvent(
                tenant_id=tenant_id,
                event="send_failed",
                id=key,
                dedupe_key=key,
                timestamp=envelope["timestamp"],
                envelope=envelope,
            )
        ],
    )


def unreadable_entry(entry: str, fields: dict) -> dict:
    """Describe an «alfred-outbox» entry that is not a message at all, as a message to refuse."""
    raw = {
        k.decode() if isinstance(k, bytes) else k: v.decode("utf-8", "replace")
        if isinstance(v, bytes)
        else v
        for k, v in fields.items()
    }
    return {
        "tenant_id": raw.get("tenant_id", ""),
        "idempotency_key": f"outbox:{entry}",
        "outbox_entry": entry,
        "raw": raw,
    }
