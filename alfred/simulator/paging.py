"""Graph's cursor paging: opaque `before`/`after` cursors and `next`/`previous` URLs."""

from __future__ import annotations

import base64

from aiohttp import web


def encode(index: int) -> str:
    """Return an opaque cursor for a position (Graph's are base64 too)."""
    return base64.urlsafe_b64encode(f"sim:{index}".encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    """Return the position a cursor stands for, or raise ValueError."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, index = text.partition(":")
        if prefix != "sim" or not index.isdigit():
            raise ValueError
        return int(index)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"Invalid cursor {cursor!r}") from None


def links(request: web.Request, start: int, shown: int, total: int, limit: int) -> dict:
    """Build `paging` for a page of `shown` items from `start` out of `total`."""
    first, last = encode(start), encode(start + shown - 1)
    result: dict = {"cursors": {"before": first, "after": last}}
    base = request.url.with_query(
        {k: v for k, v in request.query.items() if k not in ("after", "before")}
    ).update_query(limit=str(limit))
    if start + shown < total:
        result["next"] = str(base.update_query(after=last))
    if start > 0:
        result["previous"] = str(base.update_query(before=first))
    return result
