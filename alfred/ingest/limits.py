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
