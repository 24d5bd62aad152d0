"""Schemas for interactive messages: reply buttons, lists, CTA URL buttons (FACTS F7, F8)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from alfred.whatsapp.messages_fields import (
    Base,
    Header,
    TextHeader,
    non_blank,
    schema_instance,
    text_object,
    url,
)


def _bounded(max_len: int, *, required: bool = True) -> fields.Str:
    return fields.Str(required=required, validate=[validate.Length(min=1, max=max_len), non_blank])


def _duplicates(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    return [v for v in values if v in seen or seen.add(v)]


# --- reply buttons ------------------------------------------------------------------------------


class _Reply(Base):
    id = _bounded(256)
    title = _bounded(20)


class _ReplyButton(Base):
    type = fields.Str(required=True, validate=validate.Equal("reply"))
    reply = fields.Nested(_Reply, required=True)


class _ButtonAction(Base):
    buttons = fields.List(
        fields.Nested(_ReplyButton), required=True, validate=validate.Length(min=1, max=3)
    )

    @validates_schema
    def _unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        replies = [b["reply"] for b in data["buttons"]]
        if dup := _duplicates([r["title"] for r in replies]):
            raise ValidationError(f"Button titles must be unique: {dup!r}.", "buttons")
        if dup := _duplicates([r["id"] for r in replies]):
            raise ValidationError(f"Button ids must be unique: {dup!r}.", "buttons")


class ButtonInteractive(Base):
    """interactive.type == "button": up to three reply buttons."""

    type = fields.Str(required=True)
    header = fields.Nested(Header)
    body = fields.Nested(text_object(1024), required=True)
    footer = fields.Nested(text_object(60))
    action = fields.Nested(_ButtonAction, required=True)


# --- lists -------------------------------------------------------------------------------------

LIST_MAX_ROWS = 10


class _Row(Base):
    id = _bounded(200)
    title = _bounded(24)
    description = fields.Str(validate=validate.Length(max=72))


class _Section(Base):
    title = _bounded(24, required=False)
    rows = fields.List(fields.Nested(_Row), required=True, validate=validate.Length(min=1))


class _ListAction(Base):
    button = _bounded(20)
    sections = fields.List(
        fields.Nested(_Section), required=True, validate=validate.Length(min=1, max=10)
    )

    @validates_schema
    def _rows(self, data: dict[str, Any], **kwargs: Any) -> None:
        sections = data["sections"]
        rows = [row for section in sections for row in section["rows"]]
        if len(rows) > LIST_MAX_ROWS:
            raise ValidationError(
                f"At most {LIST_MAX_ROWS} rows across all sections, got {len(rows)}.", "sections"
            )
        if dup := _duplicates([row["id"] for row in rows]):
            raise ValidationError(f"Row ids must be unique: {dup!r}.", "sections")
        if len(sections) > 1 and any("title" not in s for s in sections):
            raise ValidationError("Every section needs a title when there are several.", "sections")


class ListInteractive(Base):
    """interactive.type == "list": a button that opens up to ten rows in sections."""

    type = fields.Str(required=True)
    header = fields.Nested(TextHeader)
    body = fields.Nested(text_object(4096), required=True)
    footer = fields.Nested(text_object(60))
    action = fields.Nested(_ListAction, required=True)


# --- call-to-action URL --------------------------------------------------------------------------


class _CtaParameters(Base):
    display_text = _bounded(20)
    url = url(required=True)


class _CtaAction(Base):
    name = fields.Str(required=True, validate=validate.Equal("cta_url"))
    parameters = fields.Nested(_CtaParameters, required=True)


class CtaUrlInteractive(Base):
    """interactive.type == "cta_url": one button that opens a URL."""

    type = fields.Str(required=True)
    header = fields.Nested(Header)
    body = fields.Nested(text_object(1024), required=True)
    footer = fields.Nested(text_object(60))
    action = fields.Nested(_CtaAction, required=True)


class _OtherInteractive(Base):
    """Interactive types we pass through unmodelled; they all carry an action."""

    type = fields.Str(required=True)
    action = fields.Dict(required=True)


# Meta's other interactive types: validated only for their shape, then passed through.
_PASS_THROUGH = (
    "flow",
    "product",
    "product_list",
    "catalog_message",
    "location_request_message",
    "address_message",
    "call_permission_request",
    "voice_call",
    "carousel",
)

INTERACTIVE_SCHEMAS: dict[str, type[Base]] = {
    "button": ButtonInteractive,
    "list": ListInteractive,
    "cta_url": CtaUrlInteractive,
    **dict.fromkeys(_PASS_THROUGH, _OtherInteractive),
}


def interactive_errors(obj: object) -> dict[str, Any]:
    """Return marshmallow-style errors for an interactive object, {} when it is valid."""
    if not isinstance(obj, dict):
        return {"_schema": ["Must be an object."]}
    kind = obj.get("type")
    schema = INTERACTIVE_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        choices = ", ".join(sorted(INTERACTIVE_SCHEMAS))
        return {"type": [f"Unknown interactive type {kind!r}; one of: {choices}."]}
    return schema_instance(schema).validate(obj)
