"""Validate an outbound message and turn it into the body POSTed to /{phone_number_id}/messages.

The orchestrator's message is the Cloud API message object plus ``tenant_id`` and an optional
``idempotency_key`` (CONTRACT, «alfred-outbox»). Validation checks what Meta would refuse and what
would make us send the wrong thing; the type object is then passed on as given, so fields Meta
accepts that we do not model still reach Meta.

Recipients: ``to`` must be an international number (country code first); "+" is optional and
spaces, dashes, dots and brackets are tolerated; it is sent as "+digits" because Meta prepends the
business number's country code to a number without "+" (FACTS F13). ``recipient`` is a BSUID or
parent BSUID. Either or both may be given; both are kept and Meta lets the phone number win.
Whether ``tenant_id`` names a configured tenant is the sender's check, not this module's.
"""

from __future__ import annotations

import copy
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from alfred.whatsapp.messages_fields import is_bsuid, normalise_phone, schema_instance
from alfred.whatsapp.messages_interactive import interactive_errors
from alfred.whatsapp.messages_types import (
    AudioMessage,
    ContactsList,
    DocumentMessage,
    ImageMessage,
    LocationMessage,
    ReactionMessage,
    StickerMessage,
    TemplateMessage,
    TextMessage,
    VideoMessage,
)

TYPES: dict[str, type[Schema] | None] = {
    "text": TextMessage,
    "template": TemplateMessage,
    "image": ImageMessage,
    "audio": AudioMessage,
    "video": VideoMessage,
    "document": DocumentMessage,
    "sticker": StickerMessage,
    "location": LocationMessage,
    "contacts": None,  # a list, checked by ContactsList
    "interactive": None,  # dispatched on interactive.type
    "reaction": ReactionMessage,
}
# Top-level keys of Meta's message object that we pass on besides the ones we build.
_PASSED_ON = ("recipient_identity_key_hash",)
# Most urgent first: the first reason whose fields have errors names the whole failure.
_REASON_FIELDS = (
    ("missing_tenant", ("tenant_id",)),
    ("missing_recipient", ("_recipient",)),
    ("invalid_recipient", ("to", "recipient")),
    ("unknown_type", ("type",)),
)


class InvalidMessage(ValueError):
    """The message cannot be sent as it is; nothing was sent to Meta."""

    def __init__(self, reason: str, errors: dict[str, Any]):
        self.reason = reason
        self.errors = errors
        super().__init__(f"{reason}: {', '.join(self.fields) or 'message'}")

    def __reduce__(self) -> tuple[type[InvalidMessage], tuple[str, dict[str, Any]]]:
        """Pickle by reason and errors, so the error crosses process boundaries whole."""
        return (type(self), (self.reason, self.errors))

    @property
    def fields(self) -> list[str]:
        """List the offending fields as dotted paths, e.g. "interactive.action.buttons"."""
        return sorted(_paths(self.errors))


def _paths(errors: Any, prefix: str = "") -> list[str]:
    if not isinstance(errors, dict):
        return [prefix.rstrip(".")] if prefix else []
    out: list[str] = []
    for key, value in errors.items():
        name = prefix if key == "_schema" else f"{prefix}{key}."
        out.extend(_paths(value, name) or [name.rstrip(".")])
    return [p for p in out if p]


def _jsonable(errors: Any) -> Any:
    """Give list indices string keys so the errors survive a JSON round trip unchanged."""
    if isinstance(errors, dict):
        return {str(k): _jsonable(v) for k, v in errors.items()}
    if isinstance(errors, list | tuple):
        return [_jsonable(v) for v in errors]
    return errors if isinstance(errors, str | int | float | bool | None) else str(errors)


def _check_phone(value: str) -> None:
    if normalise_phone(value) is None:
        raise ValidationError(
            "Not an international phone number (7-15 digits, country code first)."
        )


def _check_bsuid(value: str) -> None:
    if not is_bsuid(value):
        raise ValidationError("Not a business-scoped user id such as US.13491208655302741918.")


class _Context(Schema):
    message_id = fields.Str(required=True, validate=validate.Length(min=1))


class Envelope(Schema):
    """The top level: who sends, to whom, which type, and our own bookkeeping fields."""

    class Meta:
        unknown = "include"

    tenant_id = fields.Str(required=True, validate=validate.Length(min=1))
    idempotency_key = fields.Str(allow_none=True, validate=validate.Length(min=1, max=200))
    to = fields.Str(allow_none=True, validate=_check_phone)
    recipient = fields.Str(allow_none=True, validate=_check_bsuid)
    type = fields.Str(required=True, validate=validate.OneOf(tuple(TYPES)))
    context = fields.Nested(_Context, allow_none=True)
    biz_opaque_callback_data = fields.Str(allow_none=True, validate=validate.Length(max=512))
    messaging_product = fields.Str(validate=validate.Equal("whatsapp"))
    recipient_type = fields.Str(validate=validate.Equal("individual"))

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _someone(self, data: dict[str, Any], original: dict[str, Any], **kwargs: Any) -> None:
        # Read the original: a malformed "to" is an invalid recipient, not a missing one.
        if original.get("to") is None and original.get("recipient") is None:
            raise ValidationError("Give to (a phone number) or recipient (a BSUID).", "_recipient")


def _type_errors(kind: str, obj: object) -> dict[str, Any]:
    if kind == "contacts":
        return schema_instance(ContactsList).validate({"contacts": obj}).get("contacts", {})
    if kind == "interactive":
        return interactive_errors(obj)
    if not isinstance(obj, dict):
        return {"_schema": ["Must be an object."]}
    schema = TYPES[kind]
    assert schema is not None
    return schema_instance(schema).validate(obj)


def _reason(errors: dict[str, Any]) -> str:
    for reason, names in _REASON_FIELDS:
        if any(name in errors for name in names):
            return reason
    return "invalid_message"


def validate_message(message: object) -> dict:
    """Return the Graph API request body for a valid message, or raise InvalidMessage."""
    if not isinstance(message, dict):
        raise InvalidMessage("invalid_message", {"_schema": ["A message must be a JSON object."]})
    data = dict(message)
    if "type" not in data and "text" in data:
        data["type"] = "text"  # Meta's own default when type is left out
    errors: dict[str, Any] = schema_instance(Envelope).validate(data)
    kind = data.get("type")
    if "type" not in errors:
        if kind not in data:
            errors[kind] = [f"A {kind} message needs its {kind} object."]
        elif type_errors := _type_errors(kind, data[kind]):
            errors[kind] = type_errors
    if errors:
        raise InvalidMessage(_reason(errors), _jsonable(errors))

    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if data.get("to") is not None:
        body["to"] = normalise_phone(data["to"])
    if data.get("recipient") is not None:
        body["recipient"] = data["recipient"]
    body["type"] = kind
    body[kind] = copy.deepcopy(data[kind])
    for key in ("context", "biz_opaque_callback_data", *_PASSED_ON):
        if data.get(key) is not None:
            body[key] = copy.deepcopy(data[key])
    return body
