"""The bridge's validator and the simulator's, each checked against what Meta's pages say.

The two are written apart (an import-linter contract keeps them apart). Each case below is a send
body, the verdict Meta's documentation gives it (None: accepted; else the kind of refusal) and
the page that says so (developers.facebook.com/documentation/business-messaging/whatsapp/…).
Both validators must agree with Meta; a case where one did not is a bug fixed in that one.
"""

from __future__ import annotations

import pytest

from alfred.simulator.validation import message_problem
from alfred.whatsapp.messages import InvalidMessage, validate_message

USER = "+15551230001"
OK, BAD = None, "refused"
WAMID = "wamid.HBgLMTU1NTEyMzAwMDEVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA="


def reply(n: int, title: str | None = None) -> dict:
    return {"type": "reply", "reply": {"id": f"b{n}", "title": title or f"Option {n}"}}


def rows(n: int, prefix: str = "r") -> list[dict]:
    return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(n)]


def interactive(kind: str, action: dict, **extra) -> dict:
    return {"type": "interactive", "interactive": {"type": kind, **extra, "action": action}}


BODY = {"body": {"text": "Pick one"}}
# (name, message without `to`, Meta's verdict, page)
CASES = [
    ("text", {"type": "text", "text": {"body": "hi"}}, OK, "messages/text-messages"),
    ("text type defaults", {"text": {"body": "hi"}}, OK, "reference: type defaults to text"),
    ("text 4096", {"type": "text", "text": {"body": "x" * 4096}}, OK, "messages/text-messages"),
    ("text 4097", {"type": "text", "text": {"body": "x" * 4097}}, BAD, "messages/text-messages"),
    ("text no body", {"type": "text", "text": {}}, BAD, "messages/text-messages"),
    ("text preview", {"type": "text", "text": {"body": "https://a.b", "preview_url": True}}, OK,
     "messages/text-messages"),
    ("unknown type", {"type": "hologram", "hologram": {}}, BAD, "reference: type values"),
    ("type object missing", {"type": "image"}, BAD, "messages/image-messages"),
    ("image by id", {"type": "image", "image": {"id": "1234"}}, OK, "messages/image-messages"),
    ("image by link", {"type": "image", "image": {"link": "https://a.b/c.jpg", "caption": "c"}},
     OK, "messages/image-messages"),
    ("image id and link", {"type": "image", "image": {"id": "1", "link": "https://a.b/c.jpg"}},
     BAD, "messages/image-messages: id, or link when not using an id"),
    ("image neither", {"type": "image", "image": {"caption": "c"}}, BAD,
     "messages/image-messages"),
    ("caption 1025", {"type": "image", "image": {"id": "1", "caption": "x" * 1025}}, BAD,
     "messages/image-messages: caption maximum 1024"),
    ("audio caption", {"type": "audio", "audio": {"id": "1", "caption": "c"}}, BAD,
     "messages/audio-messages: no caption on audio"),
    ("document filename", {"type": "document", "document": {"id": "1", "filename": "a.pdf"}},
     OK, "messages/document-messages"),
    ("document long filename",
     {"type": "document", "document": {"id": "1", "filename": "a" * 300 + ".pdf"}}, OK,
     "messages/document-messages: filename has no documented maximum"),
    ("sticker", {"type": "sticker", "sticker": {"id": "1"}}, OK, "messages/sticker-messages"),
    ("location", {"type": "location", "location": {"latitude": 48.85, "longitude": 2.29}}, OK,
     "messages/location-messages"),
    ("location no longitude", {"type": "location", "location": {"latitude": 48.85}}, BAD,
     "messages/location-messages"),
    ("location out of range", {"type": "location", "location": {"latitude": 91, "longitude": 0}},
     BAD, "messages/location-messages: latitude in degrees"),
    ("contacts", {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann"}}]}, OK,
     "messages/contacts-messages"),
    ("contacts no name", {"type": "contacts", "contacts": [{"phones": []}]}, BAD,
     "messages/contacts-messages: name.formatted_name required"),
    ("contacts empty", {"type": "contacts", "contacts": []}, BAD, "messages/contacts-messages"),
    ("reaction", {"type": "reaction", "reaction": {"message_id": WAMID, "emoji": "👍"}}, OK,
     "messages/reaction-messages"),
    ("reaction removed", {"type": "reaction", "reaction": {"message_id": WAMID, "emoji": ""}},
     OK, "messages/reaction-messages: empty emoji removes the reaction"),
    ("reaction escaped emoji",
     {"type": "reaction", "reaction": {"message_id": WAMID, "emoji": "\\uD83D\\uDE00"}}, OK,
     "messages/reaction-messages: a Unicode escape sequence or the emoji itself"),
    ("reaction no message", {"type": "reaction", "reaction": {"emoji": "👍"}}, BAD,
     "messages/reaction-messages"),
    ("template", {"type": "template", "template": {"name": "hello_world",
                                                   "language": {"code": "en_US"}}}, OK,
     "messages/template-messages"),
    ("template no language", {"type": "template", "template": {"name": "hello_world"}}, BAD,
     "messages/template-messages"),
    ("template button no index",
     {"type": "template", "template": {"name": "t", "language": {"code": "en"}, "components": [
         {"type": "button", "sub_type": "quick_reply",
          "parameters": [{"type": "payload", "payload": "p"}]}]}}, BAD,
     "messages/template-messages: button components need sub_type and index"),
    ("buttons 3", interactive("button", {"buttons": [reply(1), reply(2), reply(3)]}, **BODY), OK,
     "messages/interactive-reply-buttons-messages"),
    ("buttons 4", interactive("button", {"buttons": [reply(i) for i in range(4)]}, **BODY), BAD,
     "messages/interactive-reply-buttons-messages: up to three"),
    ("button title 21", interactive("button", {"buttons": [reply(1, "x" * 21)]}, **BODY), BAD,
     "messages/interactive-reply-buttons-messages: title maximum 20"),
    ("button titles twice", interactive("button", {"buttons": [reply(1, "A"), reply(2, "A")]},
                                        **BODY), BAD,
     "messages/interactive-reply-buttons-messages: titles must be unique"),
    ("buttons no body", interactive("button", {"buttons": [reply(1)]}), BAD,
     "messages/interactive-reply-buttons-messages: body required"),
    ("button image header", interactive("button", {"buttons": [reply(1)]}, **BODY,
                                        header={"type": "image", "image": {"id": "1"}}), OK,
     "messages/interactive-reply-buttons-messages: header text, image, video or document"),
    ("list", interactive("list", {"button": "Menu", "sections": [{"title": "S", "rows": rows(3)}]},
                         **BODY), OK, "messages/interactive-list-messages"),
    ("list 11 rows", interactive("list", {"button": "Menu", "sections": [
        {"title": "A", "rows": rows(6)}, {"title": "B", "rows": rows(5, "s")}]}, **BODY), BAD,
     "messages/interactive-list-messages: 10 rows for all sections combined"),
    ("list two untitled", interactive("list", {"button": "Menu", "sections": [
        {"rows": rows(1)}, {"rows": rows(1, "s")}]}, **BODY), BAD,
     "messages/interactive-list-messages: section title required with several"),
    ("list image header", interactive("list", {"button": "M", "sections": [{"rows": rows(1)}]},
                                      **BODY, header={"type": "image", "image": {"id": "1"}}),
     BAD, "messages/interactive-list-messages: header text only"),
    ("list row title 25", interactive("list", {"button": "M", "sections": [
        {"rows": [{"id": "a", "title": "x" * 25}]}]}, **BODY), BAD,
     "messages/interactive-list-messages: row title maximum 24"),
    ("cta url", interactive("cta_url", {"name": "cta_url", "parameters": {
        "display_text": "See", "url": "https://a.b"}}, **BODY), OK,
     "messages/interactive-cta-url-messages"),
    ("cta url no url", interactive("cta_url", {"name": "cta_url",
                                               "parameters": {"display_text": "See"}}, **BODY),
     BAD, "messages/interactive-cta-url-messages"),
    ("flow", interactive("flow", {"name": "flow", "parameters": {"flow_id": "1"}}, **BODY), OK,
     "flows: interactive type flow"),
]  # fmt: skip


def bridge_verdict(message: dict) -> str | None:
    try:
        validate_message({"tenant_id": "home", **message})
    except InvalidMessage:
        return BAD
    return OK


def simulator_verdict(message: dict) -> str | None:
    return None if message_problem({"messaging_product": "whatsapp", **message}) is None else BAD


@pytest.mark.parametrize(("name", "message", "meta", "page"), CASES, ids=[c[0] for c in CASES])
def test_both_validators_agree_with_meta(name, message, meta, page):
    message = {"to": USER, **message}
    assert simulator_verdict(message) == meta, f"simulator disagrees with {page}"
    assert bridge_verdict(message) == meta, f"bridge disagrees with {page}"


@pytest.mark.parametrize(
    ("message", "meta"),
    [
        ({"type": "text", "text": {"body": "x"}}, BAD),  # no recipient
        ({"to": "+1 (555) 123-0001", "type": "text", "text": {"body": "x"}}, OK),
        ({"recipient": "US.13491208655302741918", "type": "text", "text": {"body": "x"}}, OK),
        ({"to": "not-a-number", "type": "text", "text": {"body": "x"}}, BAD),
    ],
)
def test_recipients_agree(message, meta):
    # send-messages: `to` a phone number in international format, or `recipient` a BSUID.
    assert simulator_verdict(message) == meta
    assert bridge_verdict(message) == meta
