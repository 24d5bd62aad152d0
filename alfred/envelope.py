"""Build the «alfred-ingest» envelopes (schema alfred.inbound.v1) from pieces of Meta's webhook."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA = "alfred.inbound.v1"

# Keys every envelope carries; a message's own object (under Meta's type name) must never
# overwrite one of them, however odd the type Meta (or an attacker with the app secret) sends.
RESERVED_KEYS = frozenset(
    {
        "schema",
        "tenant_id",
        "event",
        "id",
        "phone_number_id",
        "timestamp",
        "received_at",
        "raw",
        "from",
        "user_id",
        "parent_user_id",
        "username",
        "profile_name",
        "type",
        "text",
        "context",
        "referral",
        "errors",
    }
)

# Media whose object may carry a caption the user typed.
CAPTIONED = ("image", "video", "document")


def _str_or_none(value: object) -> str | None:
    """Return the value if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _dict_or_none(value: object) -> dict | None:
    """Return the value if it is a dict, else None."""
    return value if isinstance(value, dict) else None


def _list_or_none(value: object) -> list | None:
    """Return the value if it is a list, else None."""
    return value if isinstance(value, list) else None


def base(
    *,
    tenant_id: str,
    event: str,
    id: str,
    phone_number_id: str | None,
    timestamp: int,
    received_at: float,
    raw: object,
) -> dict[str, Any]:
    """Return the keys every envelope carries."""
    return {
        "schema": SCHEMA,
        "tenant_id": tenant_id,
        "event": event,
        "id": id,
        "phone_number_id": phone_number_id,
        "timestamp": timestamp,
        "received_at": received_at,
        "raw": raw,
    }


def match_contact(
    contacts: Sequence[object], wa_id: str | None, user_id: str | None
) -> Mapping[str, Any] | None:
    """Find the contact a message or status is about: by wa_id, then by BSUID, then the only one."""
    candidates = [c for c in contacts if isinstance(c, dict)]
    if wa_id:
        for contact in candidates:
            if contact.get("wa_id") == wa_id:
                return contact
    if user_id:
        for contact in candidates:
            if contact.get("user_id") == user_id:
                return contact
    # Only a lone contact is safe to assume; in a batch it could belong to another message.
    if len(candidates) == 1:
        return candidates[0]
    return None


def _profile(contact: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return a contact's profile object, or an empty one."""
    if contact is None:
        return {}
    profile = contact.get("profile")
    return profile if isinstance(profile, dict) else {}


def text_of(message: Mapping[str, Any]) -> str | None:
    """Return the words a person would read in this message, or None where there are none."""
    kind = message.get("type")
    if kind == "text":
        body = message.get("text")
        return _str_or_none(body.get("body")) if isinstance(body, dict) else None
    obj = _dict_or_none(message.get(kind)) if isinstance(kind, str) else None
    if obj is None:
        return None
    if kind in CAPTIONED:
        return _str_or_none(obj.get("caption"))
    if kind == "interactive":
        subtype = obj.get("type")
        if subtype in ("button_reply", "list_reply"):
            reply = obj.get(subtype)
            return _str_or_none(reply.get("title")) if isinstance(reply, dict) else None
        return None
    if kind == "button":
        return _str_or_none(obj.get("text"))
    if kind == "order":
        # The note the customer typed beside the cart.
        return _str_or_none(obj.get("text"))
    if kind == "edit":
        # An edit carries the new message; its words are what the person now reads.
        inner = _dict_or_none(obj.get("message"))
        return text_of(inner) if inner is not None and inner.get("type") != "edit" else None
    return None


def message_envelope(
    message: Mapping[str, Any],
    *,
    tenant_id: str,
    phone_number_id: str,
    timestamp: int,
    received_at: float,
    contacts: Sequence[object],
) -> dict[str, Any]:
    """Build the envelope of one inbound message (message already validated)."""
    sender = _str_or_none(message.get("from"))
    from_user_id = _str_or_none(message.get("from_user_id"))
    contact = match_contact(contacts, sender, from_user_id)
    profile = _profile(contact)
    kind = message.get("type")
    envelope = base(
        tenant_id=tenant_id,
        event="message",
        id=message["id"],
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        received_at=received_at,
        raw=message,
    )
    envelope.update(
        {
            "from": sender or (_str_or_none(contact.get("wa_id")) if contact else None),
            "user_id": from_user_id or (_str_or_none(contact.get("user_id")) if contact else None),
            "parent_user_id": _str_or_none(message.get("from_parent_user_id"))
            or (_str_or_none(contact.get("parent_user_id")) if contact else None),
            "username": _str_or_none(profile.get("username")),
            "profile_name": _str_or_none(profile.get("name")),
            "type": kind,
            "text": text_of(message),
            "context": _dict_or_none(message.get("context")),
        }
    )
    if isinstance(kind, str) and kind != "text" and kind not in RESERVED_KEYS and kind in message:
        envelope[kind] = message[kind]
    if "referral" in message:
        envelope["referral"] = message["referral"]
    if "errors" in message:
        envelope["errors"] = message["errors"]
    return envelope


def status_envelope(
    status: Mapping[str, Any],
    *,
    tenant_id: str,
    phone_number_id: str,
    timestamp: int,
    received_at: float,
    contacts: Sequence[object],
) -> dict[str, Any]:
    """Build the envelope of one status of our outbound message (status already validated)."""
    recipient_id = _str_or_none(status.get("recipient_id"))
    recipient_user_id = _str_or_none(status.get("recipient_user_id"))
    contact = match_contact(contacts, recipient_id, recipient_user_id) if contacts else None
    envelope = base(
        tenant_id=tenant_id,
        event="status",
        id=status["id"],
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        received_at=received_at,
        raw=status,
    )
    envelope.update(
        {
            "status": status["status"],
            "recipient_id": recipient_id,
            "recipient_user_id": recipient_user_id,
            "user_id": recipient_user_id,
            "parent_user_id": _str_or_none(status.get("recipient_parent_user_id")),
            "username": _str_or_none(_profile(contact).get("username")),
            "errors": _list_or_none(status.get("errors")),
            "conversation": _dict_or_none(status.get("conversation")),
            "pricing": _dict_or_none(status.get("pricing")),
            "biz_opaque_callback_data": _str_or_none(status.get("biz_opaque_callback_data")),
        }
    )
    return envelope


def stable_id(**parts: object) -> str:
    """Return a hex digest that is the same for the same parts, however often Meta resends them."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def error_envelope(
    value: Mapping[str, Any],
    *,
    tenant_id: str,
    waba_id: str | None,
    phone_number_id: str,
    timestamp: int,
    entry_time: int | None,
    received_at: float,
) -> dict[str, Any]:
    """Build the envelope of value-level errors, which Meta sends without an id of their own."""
    envelope = base(
        tenant_id=tenant_id,
        event="error",
        id=stable_id(waba_id=waba_id, field="messages", value=value, time=entry_time),
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        received_at=received_at,
        raw=value,
    )
    envelope["errors"] = value["errors"]
    return envelope


def field_envelope(
    value: object,
    *,
    tenant_id: str,
    field: str,
    waba_id: str,
    timestamp: int,
    entry_time: int | None,
    received_at: float,
) -> dict[str, Any]:
    """Build the envelope of a non-message webhook field (quality, templates, account, …)."""
    envelope = base(
        tenant_id=tenant_id,
        event=field,
        id=stable_id(waba_id=waba_id, field=field, value=value, time=entry_time),
        phone_number_id=None,
        timestamp=timestamp,
        received_at=received_at,
        raw=value,
    )
    envelope["waba_id"] = waba_id
    envelope["value"] = value
    return envelope


def send_failed_envelope(
    message: Mapping[str, Any],
    *,
    tenant_id: str,
    idempotency_key: str,
    phone_number_id: str | None,
    errors: list[dict[str, Any]],
    failed_at: float,
) -> dict[str, Any]:
    """Build the envelope telling the orchestrator an outbound message will not be delivered."""
    envelope = base(
        tenant_id=tenant_id,
        event="send_failed",
        id=idempotency_key,
        phone_number_id=phone_number_id,
        timestamp=int(failed_at),
        received_at=failed_at,
        raw=message,
    )
    envelope["to"] = message.get("to")
    envelope["recipient"] = message.get("recipient")
    envelope["errors"] = errors
    return envelope
