"""Meta webhook deliveries (tests/data/webhooks) become «alfred-ingest» envelopes."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from alfred.envelope import SCHEMA, send_failed_envelope, stable_id
from alfred.ingest.normalise import RejectedEvent, normalise_delivery
from alfred.streams import InboundEvent

DATA = Path(__file__).resolve().parent.parent / "data" / "webhooks"
PHONES = {"110000000000001": "home", "110000000000002": "biz"}
WABAS = {"310000000000001": "home", "310000000000002": "biz"}
RECEIVED_AT = 1778050999.25
BASE_KEYS = {
    "schema",
    "tenant_id",
    "event",
    "id",
    "phone_number_id",
    "timestamp",
    "received_at",
    "raw",
}
MESSAGE_KEYS = BASE_KEYS | {
    "from",
    "user_id",
    "parent_user_id",
    "username",
    "profile_name",
    "type",
    "text",
    "context",
}
STATUS_KEYS = BASE_KEYS | {
    "status",
    "recipient_id",
    "recipient_user_id",
    "user_id",
    "parent_user_id",
    "username",
    "errors",
    "conversation",
    "pricing",
    "biz_opaque_callback_data",
}
ADA = {"from": "447700900123", "user_id": "GB.28461930571846203957", "profile_name": "Ada Lovelace"}
OURS = "wamid.GAw0NDc3MDA5MDAxMjMVAgASGBRBTEZSRURPVVQwMDAx"


def load(name: str) -> dict:
    """Read one fixture delivery."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def normalise(payload: object) -> list[InboundEvent | RejectedEvent]:
    """Normalise with the two test tenants."""
    return normalise_delivery(
        payload,
        tenant_for_phone=PHONES.get,
        tenant_for_waba=WABAS.get,
        received_at=RECEIVED_AT,
    )


def only(results: list) -> dict:
    """Return the envelope of the single event a delivery yielded."""
    assert len(results) == 1, results
    assert isinstance(results[0], InboundEvent), results[0]
    return results[0].envelope


def from_ada(e: dict) -> bool:
    """Check the sender is the fixtures' usual user."""
    return all(e[k] == v for k, v in ADA.items()) and e["tenant_id"] == "home"


# Each fixture with what must hold for its events (pywa style: a table of named payloads).
CASES: dict[str, Callable[[list], bool]] = {
    "text": lambda r: (
        (e := only(r))["type"] == "text"
        and e["text"] == "Hello Alfred, what is on my calendar today?"
        and from_ada(e)
        and e["context"] is None
        and e["parent_user_id"] == "GB.ENT.50318472951037462811"
        and e["username"] is None
        and e["timestamp"] == 1778050000
        and e["phone_number_id"] == "110000000000001"
        and "referral" not in e
    ),
    "text_referral": lambda r: (
        (e := only(r))["text"] == "Hi! I saw your ad, is the offer still on?"
        and e["referral"]["source_type"] == "ad"
        and e["referral"]["ctwa_clid"].startswith("ARAkLkA8")
    ),
    "text_reply": lambda r: (
        (e := only(r))["text"] == "Yes, book that one please."
        and e["context"] == {"from": "15550100001", "id": OURS}
    ),
    "text_forwarded": lambda r: (
        (e := only(r))["context"] == {"forwarded": True} and e["text"] == "Look at this recipe"
    ),
    "image": lambda r: (
        (e := only(r))["type"] == "image"
        and e["text"] == "Receipt from lunch"
        and e["image"]["id"] == "917300000000001"
        and e["image"]["mime_type"] == "image/jpeg"
    ),
    "audio_voice": lambda r: (
        (e := only(r))["type"] == "audio" and e["audio"]["voice"] is True and e["text"] is None
    ),
    "video": lambda r: (
        (e := only(r))["video"]["id"] == "917300000000003"
        and e["text"] == "The leak under the sink"
    ),
    "document": lambda r: (
        (e := only(r))["document"]["filename"] == "invoice-2026-05.pdf"
        and e["text"] == "Please pay this by Friday"
    ),
    "sticker": lambda r: (e := only(r))["sticker"]["animated"] is False and e["text"] is None,
    "location": lambda r: (
        (e := only(r))["location"]["latitude"] == 51.5033635
        and e["location"]["name"] == "10 Downing Street"
        and e["text"] is None
    ),
    "contacts": lambda r: (
        (e := only(r))["type"] == "contacts"
        and [c["name"]["formatted_name"] for c in e["contacts"]]
        == ["Charles Babbage", "Mary Somerville"]
        and from_ada(e)
    ),
    "interactive_button_reply": lambda r: (
        (e := only(r))["text"] == "Confirm"
        and e["interactive"]["button_reply"]["id"] == "confirm:booking:42"
        and e["context"]["id"] == OURS
    ),
    "interactive_list_reply": lambda r: (
        (e := only(r))["text"] == "Thu 09:30"
        and e["interactive"]["list_reply"]["id"] == "slot:2026-05-07T09:30"
    ),
    "interactive_nfm_reply": lambda r: (
        (e := only(r))["text"] is None
        and e["interactive"]["type"] == "nfm_reply"
        and json.loads(e["interactive"]["nfm_reply"]["response_json"])["preferred_name"] == "Ada"
    ),
    "button": lambda r: (
        (e := only(r))["type"] == "button"
        and e["text"] == "Remind me later"
        and e["button"]["payload"] == "remind_me_later"
    ),
    "reaction": lambda r: (
        (e := only(r))["reaction"] == {"message_id": OURS, "emoji": "\U0001f44d"}
        and e["text"] is None
    ),
    "reaction_removed": lambda r: (
        len(r) == 2
        and all(isinstance(x, InboundEvent) for x in r)
        and r[0].envelope["reaction"]["emoji"] == ""
        and "emoji" not in r[1].envelope["reaction"]
        and r[0].dedupe_key != r[1].dedupe_key
    ),
    "order": lambda r: (
        (e := only(r))["order"]["catalog_id"] == "730000000000001"
        and len(e["order"]["product_items"]) == 2
        and e["text"] == "Please deliver after 6pm"
    ),
    "system_user_changed_number": lambda r: (
        (e := only(r))["system"]["type"] == "user_changed_number"
        and e["system"]["wa_id"] == "447700900999"
        and e["from"] == "447700900123"
        # System messages carry no contacts, so no BSUID or name here.
        and e["user_id"] is None
        and e["profile_name"] is None
    ),
    "edit": lambda r: (
        (e := only(r))["type"] == "edit"
        and e["text"] == "Hello Alfred, what is on my calendar tomorrow?"
        and e["edit"]["original_message_id"].startswith("wamid.")
    ),
    "revoke": lambda r: (
        (e := only(r))["type"] == "revoke"
        and e["revoke"]["original_message_id"]
        == r[0].envelope["raw"]["revoke"]["original_message_id"]
        and e["text"] is None
    ),
    "unsupported": lambda r: (
        (e := only(r))["type"] == "unsupported"
        and e["errors"][0]["code"] == 131051
        and e["unsupported"] == {"type": "poll"}
    ),
    "bsuid_username_no_phone": lambda r: (
        (e := only(r))["from"] is None
        and e["user_id"] == "US.13491208655302741918"
        and e["parent_user_id"] == "US.ENT.11815799212886844830"
        and e["username"] == "grace.hopper"
        and e["profile_name"] == "Grace H."
        and e["text"] == "hey, it's me from the username"
    ),
    "status_sent": lambda r: (
        (e := only(r))["event"] == "status"
        and e["status"] == "sent"
        and e["id"] == OURS
        and r[0].dedupe_key == f"{OURS}:sent"
        and e["recipient_id"] == "447700900123"
        and e["user_id"] == e["recipient_user_id"] == "GB.28461930571846203957"
        and e["pricing"]["pricing_model"] == "PMP"
        and e["conversation"]["origin"]["type"] == "utility"
        and e["biz_opaque_callback_data"] == "idem-7c1e0f3a-home-0001"
        and e["errors"] is None
    ),
    "status_delivered": lambda r: (
        (e := only(r))["status"] == "delivered"
        and r[0].dedupe_key == f"{OURS}:delivered"
        and e["conversation"] is None
        and e["biz_opaque_callback_data"] is None
    ),
    "status_read_bsuid": lambda r: (
        (e := only(r))["status"] == "read"
        and e["recipient_id"] is None
        and e["user_id"] == "US.13491208655302741918"
        and e["parent_user_id"] == "US.ENT.11815799212886844830"
        and e["username"] == "grace.hopper"
    ),
    "status_failed": lambda r: (
        (e := only(r))["status"] == "failed"
        and e["errors"][0]["code"] == 131026
        and e["username"] is None
        and e["pricing"] is None
        and e["biz_opaque_callback_data"] == "idem-7c1e0f3a-home-0003"
    ),
    "batch_after_outage": lambda r: (
        [(x.tenant_id, x.event) for x in r]
        == [("home", "message")] * 2
        + [("home", "status")] * 2
        + [("biz", "message")]
        + [("biz", "status")] * 2
        and [x.envelope["text"] for x in r[:2]] == ["are you there?", "hello??"]
        and r[4].envelope["profile_name"] == "Emmy Noether"
        and r[4].envelope["phone_number_id"] == "110000000000002"
        and r[4].envelope["user_id"] == "DE.73920164850273619402"
        and r[2].id == r[3].id
        and r[2].dedupe_key != r[3].dedupe_key
        and r[6].envelope["errors"][0]["code"] == 131047
        and len({x.dedupe_key for x in r}) == 7
    ),
    "value_errors": lambda r: (
        (e := only(r))["event"] == "error"
        and e["errors"][0]["code"] == 130429
        and len(e["id"]) == 64
        and r[0].dedupe_key == e["id"]
        # No time from Meta on this one: stamped with our receipt.
        and e["timestamp"] == int(RECEIVED_AT)
    ),
    "phone_number_quality_update": lambda r: (
        (e := only(r))["event"] == "phone_number_quality_update"
        and e["phone_number_id"] is None
        and e["timestamp"] == 1778050500
        and e["value"]["event"] == "THROUGHPUT_UPGRADE"
        and e["waba_id"] == "310000000000001"
        and e["tenant_id"] == "home"
    ),
    "message_template_status_update": lambda r: (
        (e := only(r))["event"] == "message_template_status_update"
        and e["value"]["message_template_name"] == "appointment_reminder"
        and e["timestamp"] == 1778050600
    ),
    "account_update": lambda r: (
        (e := only(r))["event"] == "account_update"
        and e["value"]["event"] == "ACCOUNT_RESTRICTION"
        and e["raw"] is e["value"]
    ),
    "non_ascii": lambda r: (
        (e := only(r))["text"].startswith("Crème brûlée für Zoë 🍮")
        and "東京" in e["text"]
        and "שלום" in e["text"]
        and "مرحبا" in e["text"]
        and e["profile_name"] == "Zoë Ñúñez-李 🌸"
        and e["username"] == "zoë.李"
    ),
}


def test_every_fixture_has_a_case():
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name):
    results = normalise(load(name))
    assert CASES[name](results), results


@pytest.mark.parametrize("name", sorted(CASES))
def test_envelope_shape(name):
    payload = load(name)
    for result in normalise(payload):
        assert isinstance(result, InboundEvent)
        e = result.envelope
        assert e["schema"] == SCHEMA
        assert e["received_at"] == RECEIVED_AT
        assert (e["tenant_id"], e["event"], e["id"], e["timestamp"]) == (
            result.tenant_id,
            result.event,
            result.id,
            result.timestamp,
        )
        assert type(e["timestamp"]) is int
        required = {"message": MESSAGE_KEYS, "status": STATUS_KEYS}.get(e["event"], BASE_KEYS)
        assert required <= set(e), required - set(e)
        if e["event"] == "message":
            assert result.dedupe_key == e["id"] == e["raw"]["id"]
            assert e["text"] is None or isinstance(e["text"], str)
        # The envelope travels as JSON; it must survive the trip unchanged.
        assert json.loads(json.dumps(e, ensure_ascii=False)) == e


@pytest.mark.parametrize("name", sorted(CASES))
def test_raw_is_the_object_meta_sent(name):
    payload = load(name)
    pristine = copy.deepcopy(payload)
    pieces = []
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            pieces += value.get("messages", []) + value.get("statuses", [])
            if change["field"] != "messages" or "errors" in value:
                pieces.append(value)
    raws = [r.envelope["raw"] for r in normalise(payload)]
    assert len(raws) == len(pieces)
    assert all(any(raw is piece for piece in pieces) for raw in raws)
    assert payload == pristine  # nothing was modified in place


@pytest.mark.parametrize("name", sorted(CASES))
def test_redelivery_gives_the_same_ids(name):
    first = normalise(load(name))
    again = normalise_delivery(
        load(name), tenant_for_phone=PHONES.get, tenant_for_waba=WABAS.get, received_at=9e9
    )
    assert [(r.id, r.dedupe_key) for r in first] == [(r.id, r.dedupe_key) for r in again]
    # Only value-level errors, which Meta does not stamp, take our receipt time.
    assert [r.timestamp for r in first if r.event != "error"] == [
        r.timestamp for r in again if r.event != "error"
    ]


def test_text_message_has_no_object_besides_text():
    e = only(normalise(load("text")))
    assert e["text"] == "Hello Alfred, what is on my calendar today?"
    assert not any(isinstance(v, dict) and "body" in v for v in e.values() if v is not e["raw"])


def test_field_ids_differ_when_the_change_differs():
    a = load("phone_number_quality_update")
    b = load("phone_number_quality_update")
    b["entry"][0]["changes"][0]["value"]["event"] = "ONBOARDING"
    c = load("phone_number_quality_update")
    c["entry"][0]["time"] += 1
    ids = {only(normalise(p))["id"] for p in (a, b, c)}
    assert len(ids) == 3


def test_field_id_is_sha256_of_the_canonical_change():
    payload = load("account_update")
    entry = payload["entry"][0]
    change = entry["changes"][0]
    expected = stable_id(
        waba_id=entry["id"], field=change["field"], value=change["value"], time=entry["time"]
    )
    assert only(normalise(payload))["id"] == expected


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "whatsapp",
        42,
        {},
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": {"id": "1"}},
    ],
)
def test_not_a_whatsapp_payload(payload):
    [result] = normalise(payload)
    assert isinstance(result, RejectedEvent)
    assert result.reason == "not_whatsapp_payload"
    assert result.raw is payload
    assert result.tenant_id is None


def test_empty_entry_list_yields_nothing():
    assert normalise({"object": "whatsapp_business_account", "entry": []}) == []


def test_unknown_phone_number_rejects_the_whole_change():
    payload = load("batch_after_outage")
    results = normalise_delivery(
        payload,
        tenant_for_phone={"110000000000001": "home"}.get,
        tenant_for_waba=WABAS.get,
        received_at=RECEIVED_AT,
    )
    rejected = [r for r in results if isinstance(r, RejectedEvent)]
    assert [r.reason for r in rejected] == ["unknown_phone_number"] * 2
    assert rejected[0].raw is payload["entry"][1]["changes"][0]
    assert "110000000000002" in rejected[0].detail
    assert sum(isinstance(r, InboundEvent) for r in results) == 4


def test_unknown_waba_rejects_the_change():
    payload = load("message_template_status_update")
    payload["entry"][0]["id"] = "399999999999999"
    [result] = normalise(payload)
    assert result.reason == "unknown_waba"
    assert result.raw is payload["entry"][0]["changes"][0]
    assert "399999999999999" in result.detail


def test_one_bad_message_rejects_only_itself():
    payload = load("batch_after_outage")
    messages = payload["entry"][0]["changes"][0]["value"]["messages"]
    messages[0]["timestamp"] = "yesterday"
    del messages[1]["id"]
    messages.append(["not", "a", "message"])
    results = normalise(payload)
    rejected = [r for r in results if isinstance(r, RejectedEvent)]
    assert [r.reason for r in rejected] == ["invalid_payload"] * 3
    assert rejected[0].raw is messages[0] and "timestamp" in rejected[0].detail
    assert rejected[1].raw is messages[1] and "id: Missing data" in rejected[1].detail
    assert rejected[2].raw == ["not", "a", "message"]
    assert {r.tenant_id for r in rejected} == {"home"}
    assert sum(isinstance(r, InboundEvent) for r in results) == 5


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "17780500.5",
        "-1778050000",
        "１７７８",
        "1e9",
        True,
        None,
        1.5,
        "9" * 5000,
        [1],
        {"t": 1},
    ],
)
def test_bad_timestamps_are_invalid(timestamp):
    payload = load("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = timestamp
    [result] = normalise(payload)
    assert result.reason == "invalid_payload"
    assert "timestamp" in result.detail


def test_integer_timestamp_is_accepted():
    payload = load("status_sent")
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"] = 1778050001
    assert only(normalise(payload))["timestamp"] == 1778050001


@pytest.mark.parametrize("bad_id", [None, "", 12345, "w" * 513, ["wamid.x"]])
def test_bad_message_ids_are_invalid(bad_id):
    payload = load("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = bad_id
    [result] = normalise(payload)
    assert result.reason == "invalid_payload"
    assert result.detail.startswith("message: id")


def test_status_without_status_is_invalid():
    payload = load("status_delivered")
    del payload["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
    [result] = normalise(payload)
    assert (result.reason, result.tenant_id) == ("invalid_payload", "home")
    assert "status: Missing data" in result.detail


def test_missing_metadata_is_invalid():
    payload = load("text")
    del payload["entry"][0]["changes"][0]["value"]["metadata"]
    [result] = normalise(payload)
    assert result.reason == "invalid_payload"
    assert "phone_number_id" in result.detail or "_schema" in result.detail


def test_bad_entry_time_on_a_field_is_invalid():
    payload = load("account_update")
    payload["entry"][0]["time"] = "soon"
    [result] = normalise(payload)
    assert result.reason == "invalid_payload"
    assert "entry.time" in result.detail


def test_unknown_message_type_passes_through_untouched():
    payload = load("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "hologram"
    message["hologram"] = {"frames": 24}
    e = only(normalise(payload))
    assert (e["type"], e["hologram"], e["text"]) == ("hologram", {"frames": 24}, None)


def test_type_named_like_an_envelope_key_cannot_overwrite_it():
    payload = load("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "tenant_id"
    message["tenant_id"] = "someone-else"
    assert only(normalise(payload))["tenant_id"] == "home"


def test_contact_is_matched_by_wa_id_in_a_batch():
    payload = load("text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"].insert(0, {"profile": {"name": "Other"}, "wa_id": "15550009999"})
    assert only(normalise(payload))["profile_name"] == "Ada Lovelace"


def test_contact_is_matched_by_user_id_when_phone_is_withheld():
    payload = load("bsuid_username_no_phone")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"].insert(0, {"profile": {"name": "Other", "username": "x"}, "user_id": "US.1"})
    assert only(normalise(payload))["username"] == "grace.hopper"


def test_tenant_lookup_failure_propagates():
    def broken(_: str) -> str | None:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        normalise_delivery(
            load("text"), tenant_for_phone=broken, tenant_for_waba=broken, received_at=0.0
        )


def test_deeply_nested_field_value_is_rejected_not_raised():
    deep: object = "x"
    for _ in range(100_000):
        deep = [deep]
    payload = load("account_update")
    payload["entry"][0]["changes"][0]["value"] = {"event": "X", "deep": deep}
    [result] = normalise(payload)
    assert result.reason == "invalid_payload"


GARBAGE = [None, True, 0, -1, 1.5, "", "x" * 100_000, "🍮" * 1000, [], [None], {}, {"": None}]


def _mutate(node: object, rng: random.Random) -> object:
    """Replace one random node of a JSON tree with garbage, in place where possible."""
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if rng.random() < 0.3:
            node[key] = rng.choice(GARBAGE)
        else:
            node[key] = _mutate(node[key], rng)
        return node
    if isinstance(node, list) and node:
        i = rng.randrange(len(node))
        node[i] = rng.choice(GARBAGE) if rng.random() < 0.3 else _mutate(node[i], rng)
        return node
    return rng.choice(GARBAGE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_garbage_never_raises(name):
    rng = random.Random(name)
    for _ in range(150):
        payload = load(name)
        for _ in range(rng.randint(1, 4)):
            payload = _mutate(payload, rng)
        results = normalise(payload)
        assert isinstance(results, list)
        for r in results:
            assert isinstance(r, InboundEvent | RejectedEvent)
            if isinstance(r, InboundEvent):
                json.dumps(r.envelope)
                assert isinstance(r.id, str) and r.id and type(r.timestamp) is int


def test_send_failed_envelope():
    message = {"tenant_id": "home", "to": "+447700900123", "type": "text", "text": {"body": "hi"}}
    e = send_failed_envelope(
        message,
        tenant_id="home",
        idempotency_key="idem-1",
        phone_number_id="110000000000001",
        errors=[{"code": 131047, "title": "Re-engagement message"}],
        failed_at=1778050000.5,
    )
    assert set(e) >= BASE_KEYS
    assert (e["event"], e["id"], e["to"], e["recipient"], e["timestamp"]) == (
        "send_failed",
        "idem-1",
        "+447700900123",
        None,
        1778050000,
    )
    assert e["raw"] is message and e["errors"][0]["code"] == 131047


def test_lone_contact_is_used_when_ids_do_not_match():
    # Mexican numbers are known to arrive with `from` and `wa_id` spelt differently (52 vs 521).
    payload = load("text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"][0]["from"] = "5215512345678"
    value["contacts"][0]["wa_id"] = "525512345678"
    e = only(normalise(payload))
    assert (e["from"], e["profile_name"]) == ("5215512345678", "Ada Lovelace")
