"""validate_message: a table of valid and invalid messages of every Cloud API type."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from alfred.whatsapp.messages import InvalidMessage, validate_message

TO = "+14155551234"
BSUID = "US.13491208655302741918"
PARENT_BSUID = "US.ENT.11815799212886844830"


def msg(kind: str, obj: object, **top) -> dict:
    """Build an orchestrator message for tenant home, to TO unless told otherwise."""
    base = {"tenant_id": "home", "to": TO, "type": kind, kind: obj}
    base.update(top)
    return {k: v for k, v in base.items() if v is not ...}


def reply(i: int, title: str | None = None) -> dict:
    """Build one reply button."""
    return {"type": "reply", "reply": {"id": f"b{i}", "title": title or f"Option {i}"}}


def buttons(*items: dict, **extra) -> dict:
    """Build an interactive reply-button object."""
    obj = {"type": "button", "body": {"text": "Pick one"}, "action": {"buttons": list(items)}}
    obj.update(extra)
    return obj


def rows(n: int, prefix: str = "r") -> list[dict]:
    """Build n list rows with distinct ids."""
    return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(n)]


def listing(*sections: dict, **extra) -> dict:
    """Build an interactive list object."""
    obj = {
        "type": "list",
        "body": {"text": "Choose"},
        "action": {"button": "Menu", "sections": list(sections)},
    }
    obj.update(extra)
    return obj


def cta(display_text: str = "Open", url: str = "https://example.com/x", **extra) -> dict:
    """Build an interactive cta_url object."""
    obj = {
        "type": "cta_url",
        "body": {"text": "See the details"},
        "action": {"name": "cta_url", "parameters": {"display_text": display_text, "url": url}},
    }
    obj.update(extra)
    return obj


def template(components: list | None = None, **extra) -> dict:
    """Build a template object."""
    obj: dict = {"name": "order_update", "language": {"code": "en_US"}}
    if components is not None:
        obj["components"] = components
    obj.update(extra)
    return obj


VALID = {
    "text": msg("text", {"body": "Hello", "preview_url": True}),
    "text_4096": msg("text", {"body": "x" * 4096}),
    "text_default_type": {"tenant_id": "home", "to": TO, "text": {"body": "no type given"}},
    "text_bsuid_only": msg("text", {"body": "hi"}, to=..., recipient=BSUID),
    "text_parent_bsuid": msg("text", {"body": "hi"}, to=..., recipient=PARENT_BSUID),
    "text_both_recipients": msg("text", {"body": "hi"}, recipient=BSUID),
    "text_reply_and_tracking": msg(
        "text",
        {"body": "re"},
        context={"message_id": "wamid.ABC"},
        biz_opaque_callback_data="t" * 512,
        idempotency_key="k" * 200,
    ),
    "template_bare": msg("template", template()),
    "template_full": msg(
        "template",
        template(
            [
                {"type": "header", "parameters": [{"type": "image", "image": {"id": "123"}}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ada"},
                        {
                            "type": "currency",
                            "currency": {
                                "fallback_value": "$10",
                                "code": "USD",
                                "amount_1000": 10000,
                            },
                        },
                        {"type": "date_time", "date_time": {"fallback_value": "May 1"}},
                        {"type": "document", "document": {"link": "https://x.test/a.pdf"}},
                        {"type": "video", "video": {"id": "9"}},
                        {
                            "type": "location",
                            "location": {"latitude": 1.5, "longitude": -2, "name": "HQ"},
                        },
                        {"type": "coupon_code", "coupon_code": "SAVE10"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "YES"}],
                },
                {"type": "button", "sub_type": "url", "index": 1, "parameters": []},
            ],
            language={"code": "en_US", "policy": "deterministic"},
        ),
    ),
    "image_id_caption": msg("image", {"id": "1234", "caption": "A photo"}),
    "image_link": msg("image", {"link": "https://example.com/a.jpg"}),
    "video": msg("video", {"link": "http://example.com/a.mp4", "caption": "clip"}),
    "document": msg("document", {"id": "55", "caption": "Invoice", "filename": "inv.pdf"}),
    "audio": msg("audio", {"id": "77"}),
    "audio_voice_passthrough": msg("audio", {"id": "77", "voice": True}),
    "sticker": msg("sticker", {"link": "https://example.com/s.webp"}),
    "location": msg(
        "location", {"latitude": -90, "longitude": 180, "name": "Pole", "address": "S"}
    ),
    "contacts": msg(
        "contacts",
        [{"name": {"formatted_name": "Ada L", "first_name": "Ada"}, "phones": [{"phone": "+1"}]}],
    ),
    "buttons_three": msg(
        "interactive",
        buttons(
            reply(1, "x" * 20),
            reply(2),
            reply(3),
            header={"type": "text", "text": "h" * 60},
            footer={"text": "f" * 60},
        ),
    ),
    "buttons_image_header": msg(
        "interactive",
        buttons(reply(1), header={"type": "image", "image": {"link": "https://e.x/i.png"}}),
    ),
    "list_ten_rows": msg(
        "interactive",
        listing(
            {"title": "First", "rows": rows(4, "a")},
            {"title": "Second", "rows": rows(6, "b")},
            header={"type": "text", "text": "Menu"},
            footer={"text": "Thanks"},
        ),
    ),
    "list_untitled_single_section": msg(
        "interactive",
        listing({"rows": [{"id": "x" * 200, "title": "t" * 24, "description": "d" * 72}]}),
    ),
    "cta_url": msg("interactive", cta(header={"type": "text", "text": "Hi"})),
    "flow_passthrough": msg(
        "interactive",
        {"type": "flow", "body": {"text": "Go"}, "action": {"name": "flow", "parameters": {}}},
    ),
    "reaction": msg("reaction", {"message_id": "wamid.X", "emoji": "👍"}),
    "reaction_remove": msg("reaction", {"message_id": "wamid.X", "emoji": ""}),
    "phone_without_plus": msg("text", {"body": "hi"}, to="14155551234"),
    "phone_with_separators": msg("text", {"body": "hi"}, to="+1 (415) 555-12.34"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_becomes_a_graph_body(name):
    message = VALID[name]
    original = copy.deepcopy(message)
    body = validate_message(message)
    kind = body["type"]
    assert body["messaging_product"] == "whatsapp"
    assert body["recipient_type"] == "individual"
    assert body[kind] == message[kind], "the type object passes through unchanged"
    assert "tenant_id" not in body and "idempotency_key" not in body
    assert set(body) <= {
        "messaging_product",
        "recipient_type",
        "to",
        "recipient",
        "type",
        kind,
        "context",
        "biz_opaque_callback_data",
    }
    assert "to" in body or "recipient" in body
    assert message == original, "the input is not modified"
    json.dumps(body)


def test_phone_is_sent_as_e164_with_plus():
    assert validate_message(VALID["phone_without_plus"])["to"] == TO
    assert validate_message(VALID["phone_with_separators"])["to"] == TO


def test_both_recipients_are_kept():
    body = validate_message(VALID["text_both_recipients"])
    assert (body["to"], body["recipient"]) == (TO, BSUID)


def test_bsuid_only_sends_no_to():
    body = validate_message(VALID["text_bsuid_only"])
    assert "to" not in body and body["recipient"] == BSUID


def test_context_and_tracking_are_passed_on():
    body = validate_message(VALID["text_reply_and_tracking"])
    assert body["context"] == {"message_id": "wamid.ABC"}
    assert body["biz_opaque_callback_data"] == "t" * 512


def test_unmodelled_fields_inside_the_type_object_survive():
    body = validate_message(msg("text", {"body": "hi", "future_flag": {"a": 1}}))
    assert body["text"]["future_flag"] == {"a": 1}


def test_other_type_objects_are_not_sent():
    message = msg("text", {"body": "hi"})
    message["image"] = {"id": "1"}
    assert "image" not in validate_message(message)


INVALID = [
    # name, message, reason, offending field (dotted path)
    ("not_a_dict", ["text"], "invalid_message", ""),
    ("no_tenant", msg("text", {"body": "hi"}, tenant_id=...), "missing_tenant", "tenant_id"),
    ("empty_tenant", msg("text", {"body": "hi"}, tenant_id=""), "missing_tenant", "tenant_id"),
    ("tenant_not_str", msg("text", {"body": "hi"}, tenant_id=7), "missing_tenant", "tenant_id"),
    ("no_recipient", msg("text", {"body": "hi"}, to=...), "missing_recipient", "_recipient"),
    ("null_recipients", msg("text", {"body": "hi"}, to=None), "missing_recipient", "_recipient"),
    ("phone_letters", msg("text", {"body": "hi"}, to="+1415abc1234"), "invalid_recipient", "to"),
    ("phone_short", msg("text", {"body": "hi"}, to="+12345"), "invalid_recipient", "to"),
    ("phone_16_digits", msg("text", {"body": "hi"}, to="+1" + "2" * 15), "invalid_recipient", "to"),
    ("phone_trunk_00", msg("text", {"body": "hi"}, to="00441234567890"), "invalid_recipient", "to"),
    ("phone_not_str", msg("text", {"body": "hi"}, to=14155551234), "invalid_recipient", "to"),
    (
        "bad_bsuid",
        msg("text", {"body": "hi"}, to=..., recipient="us.123"),
        "invalid_recipient",
        "recipient",
    ),
    (
        "bad_bsuid_with_good_phone",
        msg("text", {"body": "hi"}, recipient="13491208655302741918"),
        "invalid_recipient",
        "recipient",
    ),
    ("unknown_type", msg("poll", {"q": 1}), "unknown_type", "type"),
    ("no_type_no_text", {"tenant_id": "home", "to": TO}, "unknown_type", "type"),
    (
        "type_object_missing",
        {"tenant_id": "home", "to": TO, "type": "image"},
        "invalid_message",
        "image",
    ),
    ("text_empty", msg("text", {"body": ""}), "invalid_message", "text.body"),
    ("text_blank", msg("text", {"body": "  \n"}), "invalid_message", "text.body"),
    ("text_4097", msg("text", {"body": "x" * 4097}), "invalid_message", "text.body"),
    ("text_no_body", msg("text", {"preview_url": True}), "invalid_message", "text.body"),
    (
        "text_preview_str",
        msg("text", {"body": "a", "preview_url": "yes"}),
        "invalid_message",
        "text.preview_url",
    ),
    ("text_not_object", msg("text", "hello"), "invalid_message", "text"),
    (
        "template_no_name",
        msg("template", {"language": {"code": "en"}}),
        "invalid_message",
        "template.name",
    ),
    (
        "template_no_language",
        msg("template", {"name": "x"}),
        "invalid_message",
        "template.language",
    ),
    (
        "template_no_code",
        msg("template", template(language={"policy": "deterministic"})),
        "invalid_message",
        "template.language.code",
    ),
    (
        "template_button_no_index",
        msg(
            "template", template([{"type": "button", "sub_type": "quick_reply", "parameters": []}])
        ),
        "invalid_message",
        "template.components.0.index",
    ),
    (
        "template_button_no_sub_type",
        msg("template", template([{"type": "button", "index": 0}])),
        "invalid_message",
        "template.components.0.sub_type",
    ),
    (
        "template_index_10",
        msg("template", template([{"type": "button", "sub_type": "url", "index": 10}])),
        "invalid_message",
        "template.components.0.index",
    ),
    (
        "template_text_param_missing_value",
        msg("template", template([{"type": "body", "parameters": [{"type": "text"}]}])),
        "invalid_message",
        "template.components.0.parameters.0.text",
    ),
    (
        "template_currency_bad",
        msg(
            "template",
            template(
                [
                    {
                        "type": "body",
                        "parameters": [
                            {
                                "type": "currency",
                                "currency": {
                                    "fallback_value": "$1",
                                    "code": "USD",
                                    "amount_1000": "1",
                                },
                            }
                        ],
                    }
                ]
            ),
        ),
        "invalid_message",
        "template.components.0.parameters.0.currency.amount_1000",
    ),
    (
        "template_image_both_sources",
        msg(
            "template",
            template(
                [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "image", "image": {"id": "1", "link": "https://e.x/i.png"}}
                        ],
                    }
                ]
            ),
        ),
        "invalid_message",
        "template.components.0.parameters.0.image.id",
    ),
    ("image_no_source", msg("image", {"caption": "x"}), "invalid_message", "image.id"),
    (
        "image_both_sources",
        msg("image", {"id": "1", "link": "https://e.x/a.jpg"}),
        "invalid_message",
        "image.id",
    ),
    ("image_bad_link", msg("image", {"link": "ftp://e.x/a.jpg"}), "invalid_message", "image.link"),
    (
        "image_filename",
        msg("image", {"id": "1", "filename": "a.jpg"}),
        "invalid_message",
        "image.filename",
    ),
    (
        "audio_caption",
        msg("audio", {"id": "1", "caption": "no"}),
        "invalid_message",
        "audio.caption",
    ),
    (
        "sticker_caption",
        msg("sticker", {"id": "1", "caption": "no"}),
        "invalid_message",
        "sticker.caption",
    ),
    (
        "video_caption_too_long",
        msg("video", {"id": "1", "caption": "c" * 1025}),
        "invalid_message",
        "video.caption",
    ),
    (
        "document_no_source",
        msg("document", {"filename": "a.pdf"}),
        "invalid_message",
        "document.id",
    ),
    (
        "location_lat_range",
        msg("location", {"latitude": 91, "longitude": 0}),
        "invalid_message",
        "location.latitude",
    ),
    (
        "location_lon_range",
        msg("location", {"latitude": 0, "longitude": -180.5}),
        "invalid_message",
        "location.longitude",
    ),
    (
        "location_lat_string",
        msg("location", {"latitude": "1.0", "longitude": 0}),
        "invalid_message",
        "location.latitude",
    ),
    (
        "location_bool",
        msg("location", {"latitude": 0, "longitude": True}),
        "invalid_message",
        "location.longitude",
    ),
    ("location_missing", msg("location", {"latitude": 0}), "invalid_message", "location.longitude"),
    ("contacts_empty", msg("contacts", []), "invalid_message", "contacts"),
    (
        "contacts_not_list",
        msg("contacts", {"name": {"formatted_name": "A"}}),
        "invalid_message",
        "contacts",
    ),
    (
        "contacts_no_formatted_name",
        msg("contacts", [{"name": {"first_name": "A"}}]),
        "invalid_message",
        "contacts.0.name.formatted_name",
    ),
    ("contacts_no_name", msg("contacts", [{"phones": []}]), "invalid_message", "contacts.0.name"),
    (
        "buttons_none",
        msg("interactive", buttons()),
        "invalid_message",
        "interactive.action.buttons",
    ),
    (
        "buttons_four",
        msg("interactive", buttons(*(reply(i) for i in range(4)))),
        "invalid_message",
        "interactive.action.buttons",
    ),
    (
        "button_title_21",
        msg("interactive", buttons(reply(1, "t" * 21))),
        "invalid_message",
        "interactive.action.buttons.0.reply.title",
    ),
    (
        "button_titles_repeat",
        msg("interactive", buttons(reply(1, "Same"), reply(2, "Same"))),
        "invalid_message",
        "interactive.action.buttons",
    ),
    (
        "button_ids_repeat",
        msg(
            "interactive",
            buttons(reply(1, "A"), {"type": "reply", "reply": {"id": "b1", "title": "B"}}),
        ),
        "invalid_message",
        "interactive.action.buttons",
    ),
    (
        "button_id_257",
        msg("interactive", buttons({"type": "reply", "reply": {"id": "i" * 257, "title": "A"}})),
        "invalid_message",
        "interactive.action.buttons.0.reply.id",
    ),
    (
        "button_body_1025",
        msg("interactive", buttons(reply(1), body={"text": "b" * 1025})),
        "invalid_message",
        "interactive.body.text",
    ),
    (
        "button_no_body",
        msg("interactive", {"type": "button", "action": {"buttons": [reply(1)]}}),
        "invalid_message",
        "interactive.body",
    ),
    (
        "button_footer_61",
        msg("interactive", buttons(reply(1), footer={"text": "f" * 61})),
        "invalid_message",
        "interactive.footer.text",
    ),
    (
        "button_header_text_61",
        msg("interactive", buttons(reply(1), header={"type": "text", "text": "h" * 61})),
        "invalid_message",
        "interactive.header.text",
    ),
    (
        "button_header_image_missing",
        msg("interactive", buttons(reply(1), header={"type": "image"})),
        "invalid_message",
        "interactive.header.image",
    ),
    (
        "button_header_audio",
        msg("interactive", buttons(reply(1), header={"type": "audio", "audio": {"id": "1"}})),
        "invalid_message",
        "interactive.header.type",
    ),
    (
        "list_eleven_rows",
        msg(
            "interactive",
            listing({"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}),
        ),
        "invalid_message",
        "interactive.action.sections",
    ),
    (
        "list_no_sections",
        msg("interactive", listing()),
        "invalid_message",
        "interactive.action.sections",
    ),
    (
        "list_eleven_sections",
        msg(
            "interactive",
            listing(*({"title": f"S{i}", "rows": rows(1, f"s{i}")} for i in range(11))),
        ),
        "invalid_message",
        "interactive.action.sections",
    ),
    (
        "list_duplicate_row_ids",
        msg(
            "interactive", listing({"title": "A", "rows": rows(2)}, {"title": "B", "rows": rows(1)})
        ),
        "invalid_message",
        "interactive.action.sections",
    ),
    (
        "list_untitled_sections",
        msg("interactive", listing({"rows": rows(1, "a")}, {"rows": rows(1, "b")})),
        "invalid_message",
        "interactive.action.sections",
    ),
    (
        "list_button_21",
        msg(
            "interactive",
            listing({"rows": rows(1)})
            | {"action": {"button": "b" * 21, "sections": [{"rows": rows(1)}]}},
        ),
        "invalid_message",
        "interactive.action.button",
    ),
    (
        "list_section_title_25",
        msg("interactive", listing({"title": "t" * 25, "rows": rows(1)})),
        "invalid_message",
        "interactive.action.sections.0.title",
    ),
    (
        "list_row_title_25",
        msg("interactive", listing({"rows": [{"id": "1", "title": "t" * 25}]})),
        "invalid_message",
        "interactive.action.sections.0.rows.0.title",
    ),
    (
        "list_row_description_73",
        msg("interactive", listing({"rows": [{"id": "1", "title": "t", "description": "d" * 73}]})),
        "invalid_message",
        "interactive.action.sections.0.rows.0.description",
    ),
    (
        "list_row_id_201",
        msg("interactive", listing({"rows": [{"id": "i" * 201, "title": "t"}]})),
        "invalid_message",
        "interactive.action.sections.0.rows.0.id",
    ),
    (
        "list_empty_section",
        msg("interactive", listing({"title": "A", "rows": []})),
        "invalid_message",
        "interactive.action.sections.0.rows",
    ),
    (
        "list_body_4097",
        msg("interactive", listing({"rows": rows(1)}, body={"text": "b" * 4097})),
        "invalid_message",
        "interactive.body.text",
    ),
    (
        "list_image_header",
        msg(
            "interactive",
            listing({"rows": rows(1)}, header={"type": "image", "image": {"id": "1"}}),
        ),
        "invalid_message",
        "interactive.header.type",
    ),
    (
        "list_header_61",
        msg("interactive", listing({"rows": rows(1)}, header={"type": "text", "text": "h" * 61})),
        "invalid_message",
        "interactive.header.text",
    ),
    (
        "cta_display_21",
        msg("interactive", cta("d" * 21)),
        "invalid_message",
        "interactive.action.parameters.display_text",
    ),
    (
        "cta_bad_url",
        msg("interactive", cta(url="not a url")),
        "invalid_message",
        "interactive.action.parameters.url",
    ),
    (
        "cta_wrong_name",
        msg(
            "interactive",
            cta()
            | {
                "action": {
                    "name": "open",
                    "parameters": {"display_text": "a", "url": "https://e.x"},
                }
            },
        ),
        "invalid_message",
        "interactive.action.name",
    ),
    (
        "interactive_unknown_type",
        msg("interactive", {"type": "poll", "action": {}}),
        "invalid_message",
        "interactive.type",
    ),
    ("interactive_not_object", msg("interactive", "x"), "invalid_message", "interactive"),
    (
        "reaction_no_message_id",
        msg("reaction", {"emoji": "👍"}),
        "invalid_message",
        "reaction.message_id",
    ),
    (
        "reaction_no_emoji",
        msg("reaction", {"message_id": "wamid.X"}),
        "invalid_message",
        "reaction.emoji",
    ),
    (
        "context_no_message_id",
        msg("text", {"body": "a"}, context={}),
        "invalid_message",
        "context.message_id",
    ),
    (
        "callback_513",
        msg("text", {"body": "a"}, biz_opaque_callback_data="c" * 513),
        "invalid_message",
        "biz_opaque_callback_data",
    ),
    (
        "idempotency_201",
        msg("text", {"body": "a"}, idempotency_key="k" * 201),
        "invalid_message",
        "idempotency_key",
    ),
    (
        "group_recipient_type",
        msg("text", {"body": "a"}, recipient_type="group"),
        "invalid_message",
        "recipient_type",
    ),
]


@pytest.mark.parametrize(
    ("message", "reason", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_message_names_reason_and_field(message, reason, field):
    with pytest.raises(InvalidMessage) as caught:
        validate_message(message)
    exc = caught.value
    assert exc.reason == reason
    if field:
        assert field in exc.fields, exc.errors
    assert json.loads(json.dumps(exc.errors)) == exc.errors
    assert isinstance(exc, ValueError)


def test_the_most_urgent_reason_wins():
    with pytest.raises(InvalidMessage) as caught:
        validate_message({"to": "nope", "type": "poll"})
    assert caught.value.reason == "missing_tenant"
    assert {"tenant_id", "to", "type"} <= set(caught.value.fields)


def test_invalid_message_str_names_the_fields():
    with pytest.raises(InvalidMessage, match=r"invalid_message: text\.body"):
        validate_message(msg("text", {"body": ""}))


def test_invalid_message_pickles_whole():
    with pytest.raises(InvalidMessage) as caught:
        validate_message(msg("text", {"body": ""}))
    clone = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert (clone.reason, clone.errors) == (caught.value.reason, caught.value.errors)
