"""Building blocks shared by the outbound message schemas: strict fields, media, headers."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

# Meta wants E.164: a country code then the number, at most 15 digits, sent with "+" (FACTS F13).
# We accept the "+" missing (webhooks hand out wa_id without it) and tolerate the separators
# people type; the number must already be international: a leading 0 would be a national or
# "00" trunk prefix, which Meta would misread.
_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
_PHONE = re.compile(r"^\+?[1-9][0-9]{6,14}$")
# Business-scoped user id: country, optional ENT for a parent id, digits (FACTS, BSUID section).
_BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[0-9]{1,64}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def normalise_phone(value: object) -> str | None:
    """Return the number as "+digits", or None if it is not an international phone number."""
    if not isinstance(value, str):
        return None
    compact = _PHONE_SEPARATORS.sub("", value.strip())
    if not _PHONE.match(compact):
        return None
    return compact if compact.startswith("+") else "+" + compact


def is_bsuid(value: object) -> bool:
    """Tell whether a value looks like a BSUID (US.123…) or parent BSUID (US.ENT.123…)."""
    return isinstance(value, str) and bool(_BSUID.match(value))


class Base(Schema):
    """Keep fields we do not model: Meta's objects grow faster than our schemas."""

    class Meta:
        unknown = INCLUDE


class Number(fields.Field):
    """A JSON number: no bools, no numeric strings, no NaN or infinity."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return float(value)


class Bool(fields.Field):
    """A JSON true or false; "yes", 1 and "true" are refused rather than guessed."""

    default_error_messages = {"invalid": "Not a valid boolean."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Index(fields.Field):
    """A button index: an int or a digit string, 0 to 9 (Meta's examples send "0")."""

    default_error_messages = {"invalid": "Must be an integer from 0 to 9."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or not 0 <= value <= 9:
            raise self.make_error("invalid")
        return value


def text(max_len: int, *, required: bool = False) -> fields.Str:
    """A string of 1 to max_len characters (Python str length)."""
    return fields.Str(required=required, validate=validate.Length(min=1, max=max_len))


def url(*, required: bool = False) -> fields.Str:
    """An http(s) URL."""
    return fields.Str(
        required=required, validate=validate.Regexp(_URL, error="Not a valid http(s) URL.")
    )


def non_blank(value: str) -> None:
    """Reject a string of only whitespace, which Meta refuses as an empty value."""
    if not value.strip():
        raise ValidationError("Must not be blank.")


class MediaRef(Base):
    """An uploaded media id or a public link, never both."""

    id = fields.Str(validate=validate.Length(min=1))
    link = url()

    @validates_schema
    def _one_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("id" in data) == ("link" in data):
            raise ValidationError("Give exactly one of id or link.", "id")


def text_object(max_len: int) -> type[Schema]:
    """A schema for a {"text": …} object such as an interactive body or footer."""
    return Base.from_dict(
        {
            "text": fields.Str(
                required=True, validate=[validate.Length(min=1, max=max_len), non_blank]
            )
        },
        name=f"Text{max_len}",
    )


class Header(Base):
    """An interactive header: text, or an image, video or document."""

    MEDIA = ("image", "video", "document")

    type = fields.Str(required=True, validate=validate.OneOf(("text", *MEDIA)))
    text = text(60)
    image = fields.Nested(MediaRef)
    video = fields.Nested(MediaRef)
    document = fields.Nested(MediaRef)

    @validates_schema
    def _matching_object(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data["type"]
        if kind not in data:
            raise ValidationError(f"A {kind} header needs its {kind} object.", kind)


class TextHeader(Base):
    """A header that may only be text (list messages)."""

    type = fields.Str(required=True, validate=validate.Equal("text"))
    text = fields.Str(required=True, validate=[validate.Length(min=1, max=60), non_blank])


@functools.cache
def schema_instance(schema_class: type) -> Any:
    """Return the one instance of a schema class that every validation shares.

    Building a marshmallow schema deep-copies each declared field, a cost paid on every send
    if built per call; validate() keeps no state on the instance, so sharing it is safe.
    """
    return schema_class()
