"""marshmallow schemas for the pieces of a webhook delivery we read (lenient on unknown keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.validate import Length

MAX_ID_LENGTH = 512  # wamids are ~60 characters; anything longer would bloat dedupe keys
MAX_TIMESTAMP_DIGITS = 11  # Unix seconds up to the year 5138


def parse_timestamp(value: object) -> int:
    """Turn Meta's digit string (or int) into Unix seconds; raise ValueError on anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value < 10**MAX_TIMESTAMP_DIGITS:
            return value
    elif (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TIMESTAMP_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        return int(value)
    raise ValueError("not a Unix timestamp in seconds")


class UnixTimestamp(fields.Field):
    """A Unix timestamp in seconds, sent by Meta as a string of digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        """Return the timestamp as an int."""
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise ValidationError("Not a Unix timestamp (a string of digits).") from exc


class _Lenient(Schema):
    """Validate only the keys we read; Meta adds keys without notice."""

    class Meta:
        unknown = EXCLUDE


class MetadataSchema(_Lenient):
    """A `messages` change's metadata: which business number it is about."""

    phone_number_id = fields.String(required=True, validate=Length(min=1, max=MAX_ID_LENGTH))
    display_phone_number = fields.String()


class MessageSchema(_Lenient):
    """One item of `value.messages`."""

    id = fields.String(required=True, validate=Length(min=1, max=MAX_ID_LENGTH))
    timestamp = UnixTimestamp(required=True)
    type = fields.String(required=True, validate=Length(min=1))
    # Absent when the user adopted a username and Meta withholds the phone number.
    from_ = fields.String(data_key="from")
    from_user_id = fields.String()
    from_parent_user_id = fields.String()
    context = fields.Dict()
    referral = fields.Dict()
    errors = fields.List(fields.Dict())


class StatusSchema(_Lenient):
    """One item of `value.statuses`."""

    id = fields.String(required=True, validate=Length(min=1, max=MAX_ID_LENGTH))
    status = fields.String(required=True, validate=Length(min=1))
    timestamp = UnixTimestamp(required=True)
    recipient_id = fields.String()
    recipient_user_id = fields.String()
    recipient_parent_user_id = fields.String()
    errors = fields.List(fields.Dict())
    conversation = fields.Dict()
    pricing = fields.Dict()
    biz_opaque_callback_data = fields.String()


METADATA = MetadataSchema()
MESSAGE = MessageSchema()
STATUS = StatusSchema()


def flatten_messages(messages: object, path: str = "") -> list[str]:
    """Flatten marshmallow's nested error messages into 'path: message' lines."""
    if isinstance(messages, Mapping):
        lines: list[str] = []
        for key, sub in messages.items():
            lines.extend(flatten_messages(sub, f"{path}.{key}" if path else str(key)))
        return lines
    if isinstance(messages, list | tuple):
        return [line for sub in messages for line in flatten_messages(sub, path)]
    return [f"{path}: {messages}" if path else str(messages)]
