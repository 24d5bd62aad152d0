"""Interactive message checks, from Meta's pages on reply buttons, lists and CTA URL buttons.

Pages (developers.facebook.com/documentation/business-messaging/whatsapp/messages/…):
`interactive-reply-buttons-messages` ("up to three" buttons, body 1024, button id 256, title 20
and unique, footer 60, header text 60 or image/video/document), `interactive-list-messages`
(up to 10 sections and 10 rows in all, button 20, body 4096, text-only header 60, footer 60,
section title 24 and required with several sections, row title 24, description 72, id 200),
`interactive-cta-url-messages` (body 1024, display_text 20, url required).
"""

from __future__ import annotations

Problem = tuple[int, str]
MISSING, INVALID = 131008, 131009
# Other interactive types Meta documents; checked for their action object only.
OTHER_TYPES = frozenset(
    (
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
)
HEADER_MEDIA = ("image", "video", "document")


def _missing(path: str) -> Problem:
    return MISSING, f"The parameter {path} is required."


def _invalid(path: str, why: str) -> Problem:
    return INVALID, f"Parameter value is not valid: {path}: {why}"


def _string(obj: dict, key: str, path: str, max_len: int, required: bool = True):
    if key not in obj:
        return _missing(f"{path}.{key}") if required else None
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        return _invalid(f"{path}.{key}", "must be a non-empty string")
    if len(value) > max_len:
        return _invalid(f"{path}.{key}", f"length {len(value)} is over the maximum {max_len}")
    return None


def _text_object(obj: dict, key: str, max_len: int, required: bool) -> Problem | None:
    """A {"text": …} object: body, footer."""
    if key not in obj:
        return _missing(f"interactive.{key}") if required else None
    part = obj[key]
    if not isinstance(part, dict):
        return _invalid(f"interactive.{key}", "must be an object")
    return _string(part, "text", f"interactive.{key}", max_len)


def _header(obj: dict, media_allowed: bool) -> Problem | None:
    header = obj.get("header")
    if header is None:
        return None
    if not isinstance(header, dict):
        return _invalid("interactive.header", "must be an object")
    kind = header.get("type")
    allowed = ("text", *HEADER_MEDIA) if media_allowed else ("text",)
    if kind not in allowed:
        return _invalid("interactive.header.type", f"must be one of {', '.join(allowed)}")
    if kind == "text":
        return _string(header, "text", "interactive.header", 60)
    media = header.get(kind)
    if not isinstance(media, dict):
        return _missing(f"interactive.header.{kind}")
    if ("id" in media) == ("link" in media):
        return _invalid(f"interactive.header.{kind}", "give id or link")
    return None


def _buttons(obj: dict) -> Problem | None:
    action = obj.get("action")
    if not isinstance(action, dict):
        return _missing("interactive.action")
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not buttons:
        return _missing("interactive.action.buttons")
    if len(buttons) > 3:
        return _invalid("interactive.action.buttons", f"at most 3 buttons, got {len(buttons)}")
    titles = []
    for i, button in enumerate(buttons):
        path = f"interactive.action.buttons[{i}]"
        if not isinstance(button, dict) or button.get("type") != "reply":
            return _invalid(f"{path}.type", "must be reply")
        reply = button.get("reply")
        if not isinstance(reply, dict):
            return _missing(f"{path}.reply")
        for key, max_len in (("id", 256), ("title", 20)):
            if problem := _string(reply, key, f"{path}.reply", max_len):
                return problem
        titles.append(reply["title"])
    if len(set(titles)) != len(titles):
        return _invalid("interactive.action.buttons", "button titles must be unique")
    return None


def _list(obj: dict) -> Problem | None:
    action = obj.get("action")
    if not isinstance(action, dict):
        return _missing("interactive.action")
    if problem := _string(action, "button", "interactive.action", 20):
        return problem
    sections = action.get("sections")
    if not isinstance(sections, list) or not sections:
        return _missing("interactive.action.sections")
    if len(sections) > 10:
        return _invalid("interactive.action.sections", "at most 10 sections")
    rows = 0
    for i, section in enumerate(sections):
        path = f"interactive.action.sections[{i}]"
        if not isinstance(section, dict):
            return _invalid(path, "must be an object")
        if problem := _string(section, "title", path, 24, required=len(sections) > 1):
            return problem
        items = section.get("rows")
        if not isinstance(items, list) or not items:
            return _missing(f"{path}.rows")
        for j, row in enumerate(items):
            row_path = f"{path}.rows[{j}]"
            if not isinstance(row, dict):
                return _invalid(row_path, "must be an object")
            for key, max_len in (("id", 200), ("title", 24)):
                if problem := _string(row, key, row_path, max_len):
                    return problem
            if problem := _string(row, "description", row_path, 72, required=False):
                return problem
        rows += len(items)
    if rows > 10:
        return _invalid("interactive.action.sections", f"at most 10 rows in all, got {rows}")
    return None


def _cta_url(obj: dict) -> Problem | None:
    action = obj.get("action")
    if not isinstance(action, dict):
        return _missing("interactive.action")
    if action.get("name") != "cta_url":
        return _invalid("interactive.action.name", "must be cta_url")
    parameters = action.get("parameters")
    if not isinstance(parameters, dict):
        return _missing("interactive.action.parameters")
    if problem := _string(parameters, "display_text", "interactive.action.parameters", 20):
        return problem
    return _string(parameters, "url", "interactive.action.parameters", 10_000)


def interactive_problem(obj: dict) -> Problem | None:
    """Return (code, details) for an interactive object Meta would refuse, else None."""
    kind = obj.get("type")
    if kind is None:
        return _missing("interactive.type")
    if kind == "button":
        checks = (_header(obj, True), _text_object(obj, "body", 1024, True), _buttons(obj))
    elif kind == "list":
        checks = (_header(obj, False), _text_object(obj, "body", 4096, True), _list(obj))
    elif kind == "cta_url":
        checks = (_header(obj, True), _text_object(obj, "body", 1024, True), _cta_url(obj))
    elif kind in OTHER_TYPES:
        checks = (None if isinstance(obj.get("action"), dict) else _missing("interactive.action"),)
    else:
        return _invalid("interactive.type", f"unknown interactive type {kind!r}")
    for problem in checks:
        if problem:
            return problem
    return _text_object(obj, "footer", 60, False)
