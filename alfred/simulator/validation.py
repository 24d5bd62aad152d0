"""The simulator's own check of a send body, written from Meta's pages, not from the bridge's.

Each rule names the Meta page it comes from (developers.facebook.com/documentation/
business-messaging/whatsapp/…): `messages/send-messages` and the Messages API reference for the
envelope, `messages/text-messages`, `messages/image-messages` (and audio, document, sticker,
video), `messages/location-messages`, `messages/contacts-messages`, `messages/reaction-messages`,
`messages/template-messages`, and the interactive pages in `validation_interactive`.
The bridge validates the same bodies with its own code (alfred.whatsapp.messages): the two are
kept apart on purpose, so a test can catch either one drifting from Meta.

Codes: a missing required parameter is 131008 ("Required parameter is missing"), a present but
wrong one 131009 ("Parameter value is not valid"), an unknown message type 100.
"""

from __future__ import annotations

import math
import re

from alfred.simulator.validation_interactive import interactive_problem

Problem = tuple[int, str]
MISSING, INVALID, UNKNOWN = 131008, 131009, 100

# text-messages: "Maximum 4096 characters."
TEXT_MAX = 4096
# image/video/document-messages: "Media asset caption. Maximum 1024 characters."
CAPTION_MAX = 1024
# Messages API reference: biz_opaque_callback_data "Maximum 512 characters".
OPAQUE_MAX = 512
MEDIA = ("audio", "document", "image", "sticker", "video")
# Messages reference: the `type` values of a message send.
TYPES = frozenset(("text", "template", "location", "contacts", "interactive", "reaction", *MEDIA))
CAPTIONED = ("document", "image", "video")  # "Do not use with audio or sticker media."
# E.164 without the "+": country code first, at most 15 digits; Meta strips +, spaces, dashes.
_PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")
_PHONE_NOISE = re.compile(r"[\s\-().]")
# business-scoped-user-ids: "CC.digits", a parent BSUID has ENT: US.ENT.11815799212886844830.
_BSUID = re.compile(r"^[A-Z]{2}\.(ENT\.)?\d+$")


def missing(path: str) -> Problem:
    """Meta's 131008 with the parameter's name."""
    return MISSING, f"The parameter {path} is required."


def invalid(path: str, why: str) -> Problem:
    """Meta's 131009 with what is wrong with the parameter."""
    return INVALID, f"Parameter value is not valid: {path}: {why}"


def text_problem(obj: dict, key: str, path: str, max_len: int, required: bool) -> Problem | None:
    """Check a string field of 1..max_len characters."""
    if key not in obj:
        return missing(f"{path}.{key}") if required else None
    value = obj[key]
    if not isinstance(value, str):
        return invalid(f"{path}.{key}", "must be a string")
    if not value.strip():
        return invalid(f"{path}.{key}", "must not be empty")
    if len(value) > max_len:
        return invalid(f"{path}.{key}", f"length {len(value)} is over the maximum {max_len}")
    return None


def media_problem(obj: object, path: str, kind: str) -> Problem | None:
    """Check a media object: an uploaded `id` or a `link`, and the extras its type allows."""
    if not isinstance(obj, dict):
        return invalid(path, "must be an object")
    has_id, has_link = "id" in obj, "link" in obj
    if not has_id and not has_link:
        return missing(f"{path}.id or {path}.link")
    if has_id and has_link:
        return invalid(path, "give id or link, not both")
    ref = obj["id"] if has_id else obj["link"]
    if not isinstance(ref, str) or not ref.strip():
        return invalid(f"{path}.{'id' if has_id else 'link'}", "must be a non-empty string")
    if has_link and not ref.lower().startswith(("http://", "https://")):
        return invalid(f"{path}.link", "must be an http(s) URL")
    if "caption" in obj:
        if kind not in CAPTIONED:
            return invalid(f"{path}.caption", f"not allowed on {kind} media")
        if problem := text_problem(obj, "caption", path, CAPTION_MAX, False):
            return problem
    if "filename" in obj and kind != "document":
        return invalid(f"{path}.filename", "only documents have a filename")
    if "filename" in obj and not isinstance(obj["filename"], str):
        return invalid(f"{path}.filename", "must be a string")
    return None


def _number(value: object, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and low <= value <= high


def location_problem(obj: dict) -> Problem | None:
    """location-messages: latitude and longitude required, name and address optional."""
    for key, bound in (("latitude", 90), ("longitude", 180)):
        if key not in obj:
            return missing(f"location.{key}")
        if not _number(obj[key], -bound, bound):
            return invalid(f"location.{key}", f"must be a number from -{bound} to {bound}")
    for key in ("name", "address"):
        if key in obj and not isinstance(obj[key], str):
            return invalid(f"location.{key}", "must be a string")
    return None


def contacts_problem(cards: object) -> Problem | None:
    """contacts-messages: a non-empty array; each card needs name.formatted_name."""
    if not isinstance(cards, list):
        return invalid("contacts", "must be an array of contact objects")
    if not cards:
        return missing("contacts[0]")
    for i, card in enumerate(cards):
        path = f"contacts[{i}]"
        if not isinstance(card, dict):
            return invalid(path, "must be an object")
        name = card.get("name")
        if not isinstance(name, dict):
            return missing(f"{path}.name")
        if problem := text_problem(name, "formatted_name", f"{path}.name", 10_000, True):
            return problem
        for key in ("phones", "emails", "urls", "addresses"):
            if key in card and not isinstance(card[key], list):
                return invalid(f"{path}.{key}", "must be an array")
    return None


def reaction_problem(obj: dict) -> Problem | None:
    """reaction-messages: message_id required; emoji required, "" removes the reaction."""
    if problem := text_problem(obj, "message_id", "reaction", 10_000, True):
        return problem
    if "emoji" not in obj:
        return missing("reaction.emoji")
    if not isinstance(obj["emoji"], str):
        return invalid("reaction.emoji", "must be a string")
    return None


def template_problem(obj: dict) -> Problem | None:
    """template-messages: name and language.code required; components name their type."""
    if problem := text_problem(obj, "name", "template", 512, True):
        return problem
    language = obj.get("language")
    if not isinstance(language, dict):
        return missing("template.language")
    if problem := text_problem(language, "code", "template.language", 15, True):
        return problem
    components = obj.get("components", [])
    if not isinstance(components, list):
        return invalid("template.components", "must be an array")
    for i, component in enumerate(components):
        path = f"template.components[{i}]"
        if not isinstance(component, dict):
            return invalid(path, "must be an object")
        if problem := text_problem(component, "type", path, 64, True):
            return problem
        if component["type"].lower() == "button":
            for key in ("sub_type", "index"):
                if key not in component:
                    return missing(f"{path}.{key}")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            return invalid(f"{path}.parameters", "must be an array")
        for j, parameter in enumerate(parameters):
            if problem := _parameter_problem(parameter, f"{path}.parameters[{j}]"):
                return problem
    return None


def _parameter_problem(parameter: object, path: str) -> Problem | None:
    """A parameter's `type` names the key holding its value (text, currency, image, …)."""
    if not isinstance(parameter, dict):
        return invalid(path, "must be an object")
    if problem := text_problem(parameter, "type", path, 64, True):
        return problem
    kind = parameter["type"]
    if kind in ("text", "payload"):
        return text_problem(parameter, kind, path, 32_768, True)
    if kind in ("image", "video", "document", "currency", "date_time", "location"):
        if kind not in parameter:
            return missing(f"{path}.{kind}")
        if kind in ("image", "video", "document"):
            return media_problem(parameter[kind], f"{path}.{kind}", kind)
    return None


def recipient_problem(body: dict) -> Problem | None:
    """send-messages: `to` (a phone number) or `recipient` (a BSUID); the number wins."""
    to, recipient = body.get("to"), body.get("recipient")
    if to is None and recipient is None:
        return missing("to")
    if to is not None:
        if not isinstance(to, str) or not _PHONE.match(_PHONE_NOISE.sub("", to)):
            return invalid("to", "not a phone number in international format")
    elif not isinstance(recipient, str) or not _BSUID.match(recipient):
        return invalid("recipient", "not a business-scoped user id")
    return None


def message_problem(body: dict) -> Problem | None:
    """Return (code, details) for the first thing Meta would refuse in a send, else None."""
    if problem := recipient_problem(body):
        return problem
    kind = body.get("type", "text")  # Messages reference: type defaults to text
    if kind not in TYPES:
        return UNKNOWN, f"Param type must be one of {{{', '.join(sorted(TYPES))}}}"
    if body.get("recipient_type", "individual") != "individual":
        return invalid("recipient_type", "must be individual")
    context = body.get("context")
    if context is not None and (
        not isinstance(context, dict) or not isinstance(context.get("message_id"), str)
    ):
        return missing("context.message_id")
    opaque = body.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > OPAQUE_MAX):
        return invalid("biz_opaque_callback_data", f"a string of at most {OPAQUE_MAX} characters")
    if kind not in body:
        return missing(kind)
    obj = body[kind]
    if kind == "contacts":
        return contacts_problem(obj)
    if kind in MEDIA:
        return media_problem(obj, kind, kind)
    if not isinstance(obj, dict):
        return invalid(kind, "must be an object")
    if kind == "text":
        problem = text_problem(obj, "body", "text", TEXT_MAX, True)
        if problem is None and "preview_url" in obj and not isinstance(obj["preview_url"], bool):
            problem = invalid("text.preview_url", "must be true or false")
        return problem
    if kind == "location":
        return location_problem(obj)
    if kind == "reaction":
        return reaction_problem(obj)
    if kind == "template":
        return template_problem(obj)
    return interactive_problem(obj)
