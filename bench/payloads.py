"""Meta-shaped, signed webhook bodies and outbound messages, each unique, made on demand."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from bench.stack import APP_SECRET, TENANTS

TENANT_IDS = tuple(TENANTS)
# Recipients per tenant whose windows the bench opens: 4,000 windows in all, whatever the
# number of tenants (2,000 each for 2 tenants, 20 each for 200).
RECIPIENTS = max(20, 4000 // len(TENANT_IDS))


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """Return the X-Hub-Signature-256 header value Meta would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def recipient(i: int) -> str:
    """Return the i-th simulated user's phone number (E.164)."""
    return f"+1555{i:07d}"


def inbound_body(tag: str, i: int, *, users: int = 5000, now: float | None = None) -> bytes:
    """Return a text-message delivery with a unique wamid `wamid.<tag>.<i>`, stamped now."""
    tenant = TENANTS[TENANT_IDS[i % len(TENANT_IDS)]]
    wa_id = recipient(i % users)[1:]
    stamp = str(int(now if now is not None else time.time()))
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": tenant["waba_id"],
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "1555" + tenant["phone_number_id"][-7:],
                                "phone_number_id": tenant["phone_number_id"],
                            },
                            "contacts": [
                                {
                                    "profile": {"name": f"Bench User {i % users}"},
                                    "wa_id": wa_id,
                                    "user_id": f"US.{int(wa_id) * 7919 % 10**20:020d}",
                                }
                            ],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "from_user_id": f"US.{int(wa_id) * 7919 % 10**20:020d}",
                                    "id": f"wamid.{tag}.{i}",
                                    "timestamp": stamp,
                                    "type": "text",
                                    "text": {"body": f"Hello Alfred, message {i} — café ☕"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signed(body: bytes) -> dict[str, str]:
    """Return the headers of a signed delivery."""
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}


def outbound_message(tag: str, i: int, *, users: int = RECIPIENTS) -> dict:
    """Return the i-th send_message argument: both tenants, many recipients, a fixed key."""
    return {
        "tenant_id": TENANT_IDS[i % len(TENANT_IDS)],
        "to": recipient((i // len(TENANT_IDS)) % users),
        "type": "text",
        "text": {"body": f"Reply {i}: your calendar is clear today."},
        "idempotency_key": f"{tag}-{i}",
        "enqueued_at": time.time(),
    }
