"""Schemas for the non-interactive message type objects: text, template, media, location, …"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from alfred.whatsapp.messages_fields import (
    Base,
    Bool,
    Index,
    MediaRef,
    Number,
    non_blank,
    text,
)

TEXT_MAX = 4096  # FACTS F6
CAPTION_MAX = 1024


class TextMessage(Base):
    """text: a body of up to 4096 characters and an optional link preview."""

    body = fields.Str(required=True, validate=[validate.Length(min=1, max=TEXT_MAX), non_blank])
    preview_url = Bool()


class _Media(MediaRef):
    """A media message; subclasses say which extra fields Meta allows."""

    ALLOWED: tuple[str, ...] = ()

    @validates_schema
    def _no_foreign_fields(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Meta silently ignores or rejects a caption on audio and stickers; say so up front.
        for name in ("caption", "filename"):
            if name in data and name not in self.ALLOWED:
                raise ValidationError(f"{name} is not allowed on this media type.", name)


class ImageMessage(_Media):
    """image: id or link, optional caption."""

    ALLOWED = ("caption",)
    caption = text(CAPTION_MAX)


class VideoMessage(ImageMessage):
    """video: id or link, optional caption."""


class DocumentMessage(_Media):
    """document: id or link, optional caption and filename."""

    ALLOWED = ("caption", "filename")
    caption = text(CAPTION_MAX)
    # Meta's document-messages page gives the filename no maximum; 240 refused what Meta takes.
    filename = fields.Str(validate=validate.Length(min=1))


class AudioMessage(_Media):
    """audio: id or link only (``voice`` and other newer fields pass through)."""


class StickerMessage(_Media):
    """sticker: id or link only."""


class LocationMessage(Base):
    """location: coordinates in range, optional name and address."""

    latitude = Number(required=True, validate=validate.Range(min=-90, max=90))
    longitude = Number(required=True, validate=validate.Range(min=-180, max=180))
    name = fields.Str()
    address = fields.Str()


class _ContactName(Base):
    formatted_name = fields.Str(required=True, validate=[validate.Length(min=1), non_blank])


class _Contact(Base):
    name = fields.Nested(_ContactName, required=True)


class ReactionMessage(Base):
    """reaction: the wamid reacted to and an emoji ("" removes the reaction)."""

    message_id = fields.Str(required=True, validate=validate.Length(min=1))
    emoji = fields.Str(required=True, validate=validate.Length(max=32))


# --- templates ----------------------------------------------------------------------------------


class _Currency(Base):
    fallback_value = fields.Str(required=True)
    code = fields.Str(required=True, validate=validate.Length(equal=3))
    amount_1000 = fields.Int(required=True, strict=True)


class _DateTime(Base):
    fallback_value = fields.Str(required=True)


_PARAMETER_OBJECTS: dict[str, fields.Field] = {
    "text": fields.Str(required=True),
    "payload": fields.Str(required=True),
    "currency": fields.Nested(_Currency, required=True),
    "date_time": fields.Nested(_DateTime, required=True),
    "image": fields.Nested(MediaRef, required=True),
    "document": fields.Nested(MediaRef, required=True),
    "video": fields.Nested(MediaRef, required=True),
    "location": fields.Nested(LocationMessage, required=True),
}


class TemplateParameter(Base):
    """A template parameter: its ``type`` names the key that carries its value."""

    type = fields.Str(required=True, validate=validate.Length(min=1))

    @validates_schema
    def _value_for_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data["type"]
        field = _PARAMETER_OBJECTS.get(kind)
        if field is None:
            return  # coupon_code, action, product, …: Meta's newer types pass through
        if kind not in data:
            raise ValidationError(f"A {kind} parameter needs its {kind} value.", kind)
        try:
            field.deserialize(data[kind])
        except ValidationError as exc:
            raise ValidationError(exc.messages, kind) from None
        if kind == "text" and not data[kind]:
            raise ValidationError("Must not be empty.", kind)


class TemplateComponent(Base):
    """A header, body or button component and its parameters."""

    type = fields.Str(required=True, validate=validate.Length(min=1))
    sub_type = fields.Str(validate=validate.Length(min=1))
    index = Index()
    parameters = fields.List(fields.Nested(TemplateParameter))

    @validates_schema
    def _button_addressed(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "button":
            for name in ("sub_type", "index"):
                if name not in data:
                    raise ValidationError("Required for a button component.", name)


class _Language(Base):
    code = fields.Str(required=True, validate=validate.Length(min=2, max=15))
    policy = fields.Str(validate=validate.Equal("deterministic"))


class TemplateMessage(Base):
    """template: an approved template by name and language, with its parameters."""

    name = fields.Str(required=True, validate=validate.Length(min=1, max=512))
    language = fields.Nested(_Language, required=True)
    components = fields.List(fields.Nested(TemplateComponent))


class ContactsList(Schema):
    """contacts: a non-empty list of contact cards, each with name.formatted_name."""

    contacts = fields.List(fields.Nested(_Contact), required=True, validate=validate.Length(min=1))


__all__ = [
    "AudioMessage",
    "ContactsList",
    "DocumentMessage",
    "ImageMessage",
    "LocationMessage",
    "ReactionMessage",
    "StickerMessage",
    "TemplateMessage",
    "TextMessage",
    "VideoMessage",
]
