"""Bounded fuzzing: the webhook parser and send_message's validation never raise on any input."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alfred.ingest.limits import Refused, parse_delivery, unstorable
from alfred.ingest.normalise import RejectedEvent, normalise_delivery
from alfred.streams import InboundEvent
from alfred.whatsapp.messages import InvalidMessage, validate_message
from tests.conftest import APP_SECRET
from tests.helpers import FIXTURES, fixture, signed_headers

BOUNDED = settings(max_examples=300, deadline=None)
PAYLOADS = [fixture(path.stem) for path in sorted(FIXTURES.glob("*.json"))]
TENANTS = {"110000000000001": "home", "110000000000002": "biz"}
WABAS = {"310000000000001": "home", "310000000000002": "biz"}

# Any JSON value Python's json can hold, odd strings (lone surrogates, NUL) and NaN included.
ODD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.sampled_from(
    ["\udc00", "\ud83d", "a\x00b", "", " ", "9" * 30, "-1", "1e999", "US.1"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


@st.composite
def mutated(draw, originals) -> object:
    """A real payload with one to three of its values (or itself) replaced by arbitrary JSON."""
    value = copy.deepcopy(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(value))
        path = draw(st.sampled_from(paths))
        new = draw(JSON)
        if not path:
            value = new
            continue
        holder = value
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = new
    return value


@BOUNDED
@given(body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_the_edge_parser_only_ever_refuses_with_a_reason(body):
    try:
        parse_delivery(body)
    except Refused as exc:
        assert exc.reason and exc.detail and exc.status in (400, 413)


@BOUNDED
@given(payload=mutated(PAYLOADS))
def test_normalising_any_mutated_delivery_never_raises_and_yields_storable_events(payload):
    results = normalise_delivery(
        payload, tenant_for_phone=TENANTS.get, tenant_for_waba=WABAS.get, received_at=1.0
    )
    for result in results:
        assert isinstance(result, InboundEvent | RejectedEvent)
        if isinstance(result, InboundEvent):
            assert unstorable(result.envelope) is None
            json.dumps(result.envelope, ensure_ascii=False, allow_nan=False).encode("utf-8")


MESSAGES = [
    {"tenant_id": "home", "to": "+14155551234", "type": "text", "text": {"body": "hi"}},
    {"tenant_id": "home", "recipient": "US.1", "type": "image", "image": {"id": "1"}},
    {
        "tenant_id": "biz",
        "to": "14155551234",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    },
    {
        "tenant_id": "home",
        "to": "+14155551234",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
        },
    },
    {
        "tenant_id": "home",
        "to": "+14155551234",
        "type": "location",
        "location": {"latitude": 1, "longitude": 2},
    },
    {
        "tenant_id": "home",
        "to": "+14155551234",
        "type": "reaction",
        "reaction": {"message_id": "w", "emoji": "👍"},
    },
]


@BOUNDED
@given(message=mutated(MESSAGES) | JSON)
def test_send_validation_only_ever_refuses_with_a_reason(message):
    try:
        body = validate_message(message)
    except InvalidMessage as exc:
        assert exc.reason and exc.errors
        json.dumps(exc.errors)  # the reason is recorded as JSON: it must be JSON
        return
    assert body["messaging_product"] == "whatsapp"
    json.dumps(body, allow_nan=True)


@pytest.mark.parametrize("message", MESSAGES)
def test_the_seed_messages_of_the_fuzzer_are_valid(message):
    assert validate_message(message)["type"] == message["type"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=mutated(PAYLOADS) | JSON,
    raw=st.none() | st.binary(max_size=200),
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_any_signed_body_through_the_web_is_answered_never_a_500(web, payload, raw):
    # The whole edge at once, as Meta's signed POST meets it: a mutated real payload or any
    # JSON value (lone surrogates, NaN, huge numbers) or raw bytes, each correctly signed.
    if raw is None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        body = raw
    answer = web.post("/webhook", data=body, headers=signed_headers(body, APP_SECRET))
    assert answer.status_code in (200, 400, 413), (answer.status_code, body[:200])
    assert answer.is_json and (answer.status_code == 200 or answer.json["error"])
