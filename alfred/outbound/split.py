"""Split a reply longer than WhatsApp's text limit into parts that each fit."""

from __future__ import annotations

import re
import unicodedata

from alfred.whatsapp.messages import validate_message

TEXT_LIMIT = 4096  # FACTS F6

# Coarsest boundary first: blank lines, then sentence ends and line breaks, then any whitespace.
# Every separator is whitespace, so dropping it at a cut loses nothing a reader would see.
_LEVELS = (
    re.compile(r"(\n[ \t]*\n\s*)"),
    re.compile(r"((?<=[.!?…。！？])\s+|\s*\n\s*)"),
    re.compile(r"(\s+)"),
)


def split_text(body: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split body at paragraph, sentence, then word boundaries so no part exceeds limit."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(body) <= limit:
        return [body]
    return [part for part in _split(body, limit, 0) if part]


def _split(text: str, limit: int, level: int) -> list[str]:
    """Pack the pieces of text between boundaries of this level greedily into parts."""
    text = text.strip()
    if len(text) <= limit:
        return [text]
    if level == len(_LEVELS):
        return _hard_split(text, limit)
    tokens = _LEVELS[level].split(text)
    # re.split with a capturing group alternates piece, separator, piece, …
    pieces, separators = tokens[0::2], ["", *tokens[1::2]]
    parts: list[str] = []
    current = ""
    for separator, piece in zip(separators, pieces, strict=True):
        if not piece:
            continue
        candidate = f"{current}{separator}{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        if len(piece) <= limit:
            current = piece
        else:
            *done, current = _split(piece, limit, level + 1)
            parts.extend(done)
    if current:
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _hard_split(word: str, limit: int) -> list[str]:
    """Cut a run without whitespace into limit-sized slices, keeping combining marks attached."""
    parts: list[str] = []
    start = 0
    while start < len(word):
        end = min(start + limit, len(word))
        # Do not strand a combining mark or a zero-width joiner at the head of the next part.
        while start + 1 < end < len(word) and _joins_previous(word[end]):
            end -= 1
        parts.append(word[start:end])
        start = end
    return parts


def _joins_previous(char: str) -> bool:
    return unicodedata.combining(char) > 0 or char in "\u200d\ufe0f\ufe0e"


def validate_long(message: dict) -> dict:
    """Validate, letting a text run past Meta's limit: it is split into parts instead."""
    text = message.get("text") if message.get("type", "text") == "text" else None
    full = text.get("body") if isinstance(text, dict) else None
    if not isinstance(full, str) or len(full) <= TEXT_LIMIT:
        return validate_message(message)
    body = validate_message({**message, "text": {**text, "body": full[:TEXT_LIMIT]}})
    body["text"] = {**body["text"], "body": full}
    return body


def parts_of(body: dict, key: str) -> list[tuple[str, dict]]:
    """Return each part's key and body; a long text's parts are keyed "key#i/n"."""
    text = body.get("text", {}).get("body") if body.get("type") == "text" else None
    if text is None or len(text) <= TEXT_LIMIT:
        return [(key, {**body, "biz_opaque_callback_data": key})]
    chunks = split_text(text, TEXT_LIMIT)
    return [
        (
            f"{key}#{i + 1}/{len(chunks)}",
            {
                **body,
                "text": {**body["text"], "body": chunk},
                "biz_opaque_callback_data": f"{key}#{i + 1}/{len(chunks)}",
            },
        )
        for i, chunk in enumerate(chunks)
    ]
