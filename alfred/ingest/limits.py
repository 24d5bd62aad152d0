"""Parse a delivery's body as strict JSON, within caps on depth and size, before any work grows."""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate

# Meta's deepest payloads (an interactive reply inside a message inside a change inside an
# entry) nest about a dozen levels; json and the encoders recurse, and fail near 1,000.
MAX_DEPTH = 64
# Meta names no count per delivery, only 3 MB (FACTS F2); these sit far above real batches.
MAX_ENTRIES = 1000
MAX_CHANGES = 1000
MAX_EVENTS = 5000

INVALID_JSON = "invalid_json"
TOO_DEEP = "too_deep"
TOO_MANY = "too_many_items"

# A JSON string, escapes included (unrolled, so the regex engine never backtracks).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_DELTA = [0] * 256
for _b in b"[{":
    _DELTA[_b] = 1
for _b in b"]}":
    _DELTA[_b] = -1


class Refused(ValueError):
    """A body that is not one Meta would send: not strict JSON, nested too deep, or too big."""

    def __init__(self, reason: str, detail: str, status: int = 400):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


def depth_of(body: bytes) -> int:
    """Return how deep the body's arrays and objects nest, ignoring brackets inside strings."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _constant(name: str) -> float:
    raise Refused(INVALID_JSON, f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(INVALID_JSON, f"the number {text[:40]} is too large for a double")
    return value


def _int(text: str) -> int:
    limit = sys.get_int_max_str_digits()
    digits = len(text.lstrip("-"))
    if limit and digits > limit:
        raise Refused(
            INVALID_JSON,
            f"an integer has {digits} digits, over Python's limit of {limit} digits "
            "for converting a string to an integer (sys.get_int_max_str_digits)",
        )
    return int(text)


def parse_delivery(body: bytes | str) -> object:
    """Return the parsed body, or raise Refused saying what is wrong with it."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    depth = depth_of(raw)
    if depth > MAX_DEPTH:
        raise Refused(TOO_DEEP, f"JSON nested {depth} levels deep; the limit is {MAX_DEPTH}")
    try:
        payload = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except Refused:
        raise
    except (ValueError, RecursionError) as exc:
        raise Refused(INVALID_JSON, f"body is not JSON: {exc}") from exc
    check_counts(payload)
    return payload


def check_counts(payload: object) -> None:
    """Raise Refused when a delivery holds more entries, changes or events than Meta sends."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return
    if len(entries) > MAX_ENTRIES:
        raise Refused(TOO_MANY, f"{len(entries)} entries; the limit is {MAX_ENTRIES}", 413)
    changes = events = 0
    for entry in entries:
        items = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(items, list):
            continue
        changes += len(items)
        for change in items:
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict):
                events += sum(
                    len(value[key]) if isinstance(value.get(key), list) else 0
                    for key in ("messages", "statuses", "errors")
                )
    if changes > MAX_CHANGES:
        raise Refused(TOO_MANY, f"{changes} changes; the limit is {MAX_CHANGES}", 413)
    if events > MAX_EVENTS:
        raise Refused(TOO_MANY, f"{events} messages and statuses; the limit is {MAX_EVENTS}", 413)


def _walk(value: object, path: str):
    """Yield (path, item) for every key, string and number inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}" if path else str(key), key
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


def unstorable(value: object) -> str | None:
    """Say why a value cannot go to Redis or PostgreSQL as JSON text, or None when it can.

    A JSON escape can spell what UTF-8 cannot encode (a lone surrogate, "\\udc00") and what
    PostgreSQL refuses in text and jsonb ("\\u0000"); an old journal may hold NaN.
    """
    if _plainly_storable(value):
        return None
    for path, item in _walk(value, ""):
        where = ascii(path)[1:-1][:120]
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = ascii(exc.object[exc.start : exc.end])[1:-1]
                return f"{where} holds a lone surrogate ({bad}), which UTF-8 cannot encode"
            if "\x00" in item:
                return f"{where} holds a NUL character (\\u0000), which PostgreSQL cannot store"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{where} is {item}, which JSON cannot express"
    return None


def _plainly_storable(value: object) -> bool:
    """Say, in C, that a value is storable: the usual case, without naming a path per item.

    json's C encoder refuses NaN and Infinity (allow_nan=False), UTF-8 refuses a lone
    surrogate, and a NUL comes out as the escape \\u0000. A text that holds those six
    characters itself (a backslash before "u0000") also has them in the encoding: that, and
    anything the encoder refuses, goes to the walk, which tells them apart and names the path.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return False
    return "\\u0000" not in text


def storable_copy(value: object) -> object:
    """Return a copy that can be stored anywhere: bad characters spelled out as escapes."""
    if isinstance(value, dict):
        return {storable_copy(key): storable_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_copy(item) for item in value]
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text.replace("\x00", "\\u0000")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
