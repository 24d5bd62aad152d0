"""Read a Meta webhook delivery into one event per message, status, error or field change."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from alfred import envelope as env
from alfred.ingest.limits import unstorable
from alfred.streams import InboundEvent
from alfred.whatsapp.inbound_schemas import (
    MESSAGE,
    METADATA,
    STATUS,
    flatten_messages,
    parse_timestamp,
)

WHATSAPP_OBJECT = "whatsapp_business_account"
MAX_DETAIL_LENGTH = 500


@dataclass(frozen=True)
class RejectedEvent:
    """A piece of a delivery that could not become an event, and why."""

    reason: str
    detail: str
    tenant_id: str | None
    raw: object


Result = InboundEvent | RejectedEvent
TenantLookup = Callable[[str], str | None]


def _detail(text: str) -> str:
    """Keep a rejection's detail short enough for a log line."""
    return text if len(text) <= MAX_DETAIL_LENGTH else text[: MAX_DETAIL_LENGTH - 1] + "…"


def _invalid(detail: str, tenant_id: str | None, raw: object) -> RejectedEvent:
    """Reject a piece of the delivery as malformed."""
    return RejectedEvent("invalid_payload", _detail(detail), tenant_id, raw)


def _validation_detail(what: str, exc: ValidationError) -> str:
    """Describe a marshmallow failure in one line."""
    return f"{what}: " + "; ".join(flatten_messages(exc.messages))


def normalise_delivery(
    payload: object,
    *,
    tenant_for_phone: TenantLookup,
    tenant_for_waba: TenantLookup,
    received_at: float,
) -> list[Result]:
    """Read every entry, change, message and status of a delivery; never raise on bad input.

    Only the tenant lookups may raise (a database that is down is not bad input, and the
    delivery must then be retried rather than rejected).
    """
    if (
        not isinstance(payload, dict)
        or payload.get("object") != WHATSAPP_OBJECT
        or not isinstance(payload.get("entry"), list)
    ):
        detail = f"expected an object with object={WHATSAPP_OBJECT!r} and a list 'entry'"
        return [RejectedEvent("not_whatsapp_payload", detail, None, payload)]
    results: list[Result] = []
    for entry in payload["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            results.append(_invalid("entry: expected an object with a list 'changes'", None, entry))
            continue
        for change in entry["changes"]:
            if (
                not isinstance(change, dict)
                or not isinstance(change.get("field"), str)
                or "value" not in change
            ):
                results.append(
                    _invalid("change: expected an object with field and value", None, change)
                )
            elif change["field"] == "messages":
                _read_messages_change(results, entry, change, tenant_for_phone, received_at)
            else:
                _read_field_change(results, entry, change, tenant_for_waba, received_at)
    return [_storable(result) for result in results]


def _storable(result: Result) -> Result:
    """Reject, alone, an event whose envelope Redis or the database could not take."""
    if isinstance(result, InboundEvent) and (problem := unstorable(result.envelope)):
        what = f"{result.event} {ascii(result.id)[1:-1][:100]}"
        return _invalid(f"{what}: {problem}", result.tenant_id, result.envelope.get("raw"))
    return result


def _entry_time(entry: Mapping[str, Any]) -> int | None:
    """Return the entry's `time`, or None when Meta sent none or nonsense."""
    try:
        return parse_timestamp(entry.get("time"))
    except ValueError:
        return None


def _read_messages_change(
    results: list[Result],
    entry: Mapping[str, Any],
    change: Mapping[str, Any],
    tenant_for_phone: TenantLookup,
    received_at: float,
) -> None:
    """Append the events of one `messages` change: its messages, statuses and errors."""
    value = change["value"]
    if not isinstance(value, dict):
        results.append(_invalid("change.value: expected an object", None, change))
        return
    try:
        metadata = METADATA.load(value.get("metadata"))
    except ValidationError as exc:
        results.append(_invalid(_validation_detail("metadata", exc), None, change))
        return
    phone_number_id = metadata["phone_number_id"]
    tenant_id = tenant_for_phone(phone_number_id)
    if tenant_id is None:
        detail = f"no tenant owns phone_number_id {phone_number_id}"
        results.append(RejectedEvent("unknown_phone_number", _detail(detail), None, change))
        return
    contacts = value.get("contacts")
    if not isinstance(contacts, list):
        contacts = []
    for key, read in (("messages", _read_message), ("statuses", _read_status)):
        items = value.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            results.append(_invalid(f"value.{key}: expected a list", tenant_id, change))
            continue
        for item in items:
            try:
                results.append(read(item, tenant_id, phone_number_id, contacts, received_at))
            except Exception as exc:  # noqa: BLE001 - last guard: one odd item must not sink the batch
                results.append(_invalid(f"{key} item: {exc!r}", tenant_id, item))
    if "errors" in value:
        try:
            results.append(_read_errors(value, tenant_id, phone_number_id, entry, received_at))
        except Exception as exc:  # noqa: BLE001 - same last guard as above
            results.append(_invalid(f"value.errors: {exc!r}", tenant_id, change))


def _read_message(
    item: object, tenant_id: str, phone_number_id: str, contacts: list, received_at: float
) -> Result:
    """Turn one item of `value.messages` into a message event."""
    try:
        data = MESSAGE.load(item)  # type: ignore[arg-type]
    except ValidationError as exc:
        return _invalid(_validation_detail("message", exc), tenant_id, item)
    envelope = env.message_envelope(
        item,  # type: ignore[arg-type]
        tenant_id=tenant_id,
        phone_number_id=phone_number_id,
        timestamp=data["timestamp"],
        received_at=received_at,
        contacts=contacts,
    )
    wamid = data["id"]
    return InboundEvent(tenant_id, "message", wamid, wamid, data["timestamp"], envelope)


def _read_status(
    item: object, tenant_id: str, phone_number_id: str, contacts: list, received_at: float
) -> Result:
    """Turn one item of `value.statuses` into a status event."""
    try:
        data = STATUS.load(item)  # type: ignore[arg-type]
    except ValidationError as exc:
        return _invalid(_validation_detail("status", exc), tenant_id, item)
    envelope = env.status_envelope(
        item,  # type: ignore[arg-type]
        tenant_id=tenant_id,
        phone_number_id=phone_number_id,
        timestamp=data["timestamp"],
        received_at=received_at,
        contacts=contacts,
    )
    wamid = data["id"]
    # One wamid goes through sent, delivered, read (or failed): each is its own event.
    key = f"{wamid}:{data['status']}"
    return InboundEvent(tenant_id, "status", wamid, key, data["timestamp"], envelope)


def _read_errors(
    value: dict,
    tenant_id: str,
    phone_number_id: str,
    entry: Mapping[str, Any],
    received_at: float,
) -> Result:
    """Turn value-level `errors` (Meta could not deliver something to us) into an error event."""
    errors = value["errors"]
    if not isinstance(errors, list) or not errors or not all(isinstance(e, dict) for e in errors):
        return _invalid("value.errors: expected a non-empty list of objects", tenant_id, value)
    entry_time = _entry_time(entry)
    # Meta stamps these with no time of their own; entry.time when present, else our receipt.
    timestamp = entry_time if entry_time is not None else int(received_at)
    waba_id = entry.get("id") if isinstance(entry.get("id"), str) else None
    envelope = env.error_envelope(
        value,
        tenant_id=tenant_id,
        waba_id=waba_id,
        phone_number_id=phone_number_id,
        timestamp=timestamp,
        entry_time=entry_time,
        received_at=received_at,
    )
    return InboundEvent(tenant_id, "error", envelope["id"], envelope["id"], timestamp, envelope)


def _read_field_change(
    results: list[Result],
    entry: Mapping[str, Any],
    change: Mapping[str, Any],
    tenant_for_waba: TenantLookup,
    received_at: float,
) -> None:
    """Append the event of a non-message field (quality, template status, account update, …)."""
    field = change["field"]
    waba_id = entry.get("id")
    if not isinstance(waba_id, str) or not waba_id:
        results.append(_invalid("entry.id: expected the WABA id as a string", None, change))
        return
    entry_time: int | None = None
    if "time" in entry:
        try:
            entry_time = parse_timestamp(entry["time"])
        except ValueError:
            results.append(_invalid("entry.time: not a Unix timestamp", None, change))
            return
    tenant_id = tenant_for_waba(waba_id)
    if tenant_id is None:
        detail = f"no tenant owns WABA {waba_id} (field {field})"
        results.append(RejectedEvent("unknown_waba", _detail(detail), None, change))
        return
    try:
        envelope = env.field_envelope(
            change["value"],
            tenant_id=tenant_id,
            field=field,
            waba_id=waba_id,
            timestamp=entry_time if entry_time is not None else int(received_at),
            entry_time=entry_time,
            received_at=received_at,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. a value nested too deep to hash
        results.append(_invalid(f"{field}: {exc!r}", tenant_id, change))
        return
    event_id = envelope["id"]
    results.append(
        InboundEvent(tenant_id, field, event_id, event_id, envelope["timestamp"], envelope)
    )
