"""The simulator driven over real HTTP by a client that is not ours: pywa 4.5.0 (PyPI).

pywa builds its requests for https://graph.facebook.com/v{api_version}; the transport below only
re-points them at the simulator's address, so every body, header and parse is pywa's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pywa import WhatsApp, errors, handlers, types
from pywa.types import message_status
from pywa.types.base_update import RawUpdate
from pywa.types.sent_update import SentReaction
from pywa.types.templates import ParamFormat, TemplateLanguage

from alfred.simulator.errors import CATALOGUE
from alfred.simulator.testing import WebhookRecorder
from tests.simulator.conftest import APP_SECRET, HOME, TOKEN, USER

BSUID = "US.13491208655302741918"


class ToSimulator(httpx.HTTPTransport):
    """Send pywa's Graph requests to the local simulator instead of graph.facebook.com."""

    def __init__(self, base_url: str):
        super().__init__()
        self._target = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        t = self._target
        request.url = request.url.copy_with(scheme=t.scheme, host=t.host, port=t.port)
        return super().handle_request(request)


def client_for(sim, token: str = TOKEN) -> WhatsApp:
    """A pywa client for the home tenant whose requests reach `sim`."""
    session = httpx.Client(transport=ToSimulator(sim.url), timeout=10)
    return WhatsApp(
        phone_id=HOME.phone_number_id,
        token=token,
        waba_id=HOME.waba_id,
        app_id=1234567890,
        app_secret=APP_SECRET,
        api_version="25.0",
        session=session,
    )


@pytest.fixture
def sim(make_sim):
    """One status per webhook POST: pywa reads only statuses[0] of a change."""
    return make_sim(batch_statuses=False)


@pytest.fixture
def wa(sim) -> Iterator[WhatsApp]:
    client = client_for(sim)
    yield client
    client.api._session.close()


def sent_types(sim) -> list[str]:
    return [m["type"] for m in sim.handle.state.messages("home")]


# --- sends of every type -------------------------------------------------------------------


def test_sends_of_every_type_parse_into_pywa_types(sim, wa):
    inbound = sim.inbound(**{"from": USER, "text": "hi"})
    to = USER
    results = [
        wa.send_message(to, "hello", preview_url=True, tracker="key-1"),
        wa.send_image(to, "https://example.org/cat.jpg", caption="a cat"),
        wa.send_image(to, b"\x89PNG fake bytes", mime_type="image/png"),  # uploads first
        wa.send_video(to, "https://example.org/v.mp4"),
        wa.send_audio(to, "https://example.org/a.ogg"),
        wa.send_document(to, "https://example.org/d.pdf", filename="d.pdf", caption="doc"),
        wa.send_sticker(to, "https://example.org/s.webp"),
        wa.send_location(to, latitude=48.8584, longitude=2.2945, name="Eiffel", address="Paris"),
        wa.send_contact(
            to,
            types.Contact(
                name=types.Contact.Name(formatted_name="Ann Lee", first_name="Ann"),
                phones=[types.Contact.Phone(phone="+15550001111", type="HOME")],
            ),
        ),
        wa.send_reaction(to, "👍", message_id=inbound["wamid"]),
        wa.remove_reaction(to, message_id=inbound["wamid"]),
        wa.send_message(
            to, "Pick", footer="f", buttons=[types.Button("Yes", "y"), types.Button("No", "n")]
        ),
        wa.send_message(
            to,
            "Menu",
            buttons=types.SectionList(
                "Open",
                [types.Section("Mains", [types.SectionRow("Soup", "soup", description="Hot")])],
            ),
        ),
        wa.send_message(to, "Go", buttons=types.URLButton("Site", "https://example.org")),
        wa.send_template(to, name="hello_world", language=TemplateLanguage.ENGLISH_US),
    ]
    for sent in results:
        assert isinstance(sent, types.SentMessage)
        assert sent.id.startswith("wamid.") and sent.input == USER
        assert sent.chat.id == "15551230001"
    assert isinstance(results[9], SentReaction)
    assert sent_types(sim) == [
        "text", "image", "image", "video", "audio", "document", "sticker", "location",
        "contacts", "reaction", "reaction", "interactive", "interactive", "interactive",
        "template",
    ]  # fmt: skip
    assert wa.mark_message_as_read(inbound["wamid"]).success
    assert wa.indicate_typing(inbound["wamid"]).success


def test_a_bsuid_recipient_is_sent_as_recipient(sim, wa):
    sim.inbound(user_id=BSUID, username="neo")
    sent = wa.send_message(BSUID, "hi")
    assert sent.chat.id == BSUID
    assert sim.handle.state.messages("home")[-1]["recipient"] == BSUID


# --- errors map to pywa's typed exceptions for Meta's codes ----------------------------------

# Meta's code -> the exception pywa raises for it (pywa/errors.py); codes pywa has no class for
# (1, 2, 100) raise the base WhatsAppError.
SYNC_EXCEPTIONS = {
    1: errors.WhatsAppError,
    2: errors.WhatsAppError,
    4: errors.ToManyAPICalls,
    100: errors.WhatsAppError,
    190: errors.ExpiredAccessToken,
    368: errors.TemporarilyBlocked,
    80007: errors.RateLimitIssues,
    130429: errors.RateLimitHit,
    131000: errors.UnknownError,
    131005: errors.AccessDenied,
    131008: errors.MissingRequiredParameter,
    131009: errors.InvalidParameter,
    131016: errors.ServiceUnavailable,
    131056: errors.TooManyMessages,
    131057: errors.AccountInMaintenanceMode,
    132001: errors.TemplateNotExists,
}
ASYNC_EXCEPTIONS = {
    131026: errors.MessageUndeliverable,
    131047: errors.ReEngagementMessage,
    131048: errors.SpamRateLimitHit,
    131049: errors.MessageUndeliverableDueToHealthyEcosystemEngagement,
    131053: errors.MediaUploadError,
}


def test_every_code_of_the_catalogue_is_covered_here():
    assert set(CATALOGUE) == set(SYNC_EXCEPTIONS) | set(ASYNC_EXCEPTIONS)
    assert {c for c, row in CATALOGUE.items() if row.asynchronous} == set(ASYNC_EXCEPTIONS)


@pytest.mark.parametrize("code", sorted(SYNC_EXCEPTIONS))
def test_injected_errors_raise_pywas_exception_for_the_code(sim, wa, code):
    sim.inbound(**{"from": USER})
    r = sim.session.post(f"{sim.url}/_sim/faults", json={"error_rates": {str(code): 1.0}})
    assert r.status_code == 200
    with pytest.raises(errors.WhatsAppError) as caught:
        wa.send_message(USER, "hello")
    error = caught.value
    assert type(error) is SYNC_EXCEPTIONS[code]
    assert error.code == code and error.message and error.type == "OAuthException"
    assert error.details and len(error.fbtrace_id) == 27
    assert error.status_code == CATALOGUE[code].http_status


def test_errors_the_simulator_decides_itself(make_sim):
    sim = make_sim(pair_burst=1, batch_statuses=False)
    wa = client_for(sim)
    sim.inbound(**{"from": USER})
    wa.send_message(USER, "first")
    with pytest.raises(errors.TooManyMessages):
        wa.send_message(USER, "second, too soon")
    with pytest.raises(errors.TemplateNotExists):
        wa.send_template("+15551230002", name="no_such", language=TemplateLanguage.ENGLISH)
    with pytest.raises(errors.ExpiredAccessToken):
        client_for(sim, token="not-a-token").send_message("+15551230003", "x")
    with pytest.raises(errors.InvalidParameter) as caught:
        wa.send_message("+15551230004", "x" * 4097)
    assert "text.body" in caught.value.details


# --- webhooks parse with pywa's own update types -----------------------------------------------


class Parsed:
    """Feed recorded webhooks through pywa's validator and handlers; keep what they built."""

    def __init__(self, wa: WhatsApp):
        self.wa = wa
        self.updates: list = []
        record = self.updates.append
        wa.add_handlers(
            handlers.MessageHandler(lambda _, u: record(u)),
            handlers.CallbackButtonHandler(lambda _, u: record(u)),
            handlers.CallbackSelectionHandler(lambda _, u: record(u)),
            handlers.MessageStatusHandler(lambda _, u: record(u)),
            handlers.TemplateStatusUpdateHandler(lambda _, u: record(u)),
        )

    def feed(self, headers: dict, body: bytes) -> list:
        before = len(self.updates)
        assert self.wa.webhook_update_validator(body, headers["X-Hub-Signature-256"]) is None
        assert self.wa.webhook_update_handler(body) == ("ok", 200)
        return self.updates[before:]


def test_pywa_parses_every_webhook_the_simulator_sends(sim, wa, recorder: WebhookRecorder):
    image = sim.inbound(**{"from": USER, "type": "image", "caption": "look"})
    sim.inbound(**{"from": USER, "type": "location"})
    sim.inbound(**{"from": USER, "type": "interactive"})
    sim.inbound(
        **{
            "from": USER,
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": "soup", "title": "Soup"}},
        }
    )
    sim.inbound(**{"from": USER, "type": "button"})
    sim.inbound(
        **{"from": USER, "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}
    )
    sim.inbound(user_id=BSUID, username="neo", text="no number")
    text = wa.send_message(USER, "hello", tracker="key-1")
    reaction = wa.send_reaction(USER, "👍", message_id=image["wamid"])
    to_bsuid = wa.send_message(BSUID, "hi neo")
    sim.session.post(
        f"{sim.url}/v25.0/{HOME.waba_id}/message_templates",
        json={"name": "order_ready", "language": "en_US", "category": "UTILITY"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    # 7 inbound, 3 + 1 + 3 statuses, 1 template update
    assert recorder.wait_for(lambda rec: len(rec.received) == 15)
    parsed = Parsed(client_for(sim))
    for headers, body in list(recorder.received):
        [update] = parsed.feed(headers, body)  # exactly one typed update per webhook
    kinds = [type(u).__name__ for u in parsed.updates]
    # image, location, reaction, text; button_reply and a template button; list_reply
    assert kinds.count("Message") == 4 and kinds.count("CallbackButton") == 2
    assert kinds.count("CallbackSelection") == 1 and kinds.count("TemplateStatusUpdate") == 1
    statuses = [u for u in parsed.updates if isinstance(u, types.MessageStatus)]
    by_id: dict[str, list] = {}
    for status in statuses:
        by_id.setdefault(status.id, []).append(status)
    assert sorted(s.status for s in by_id[text.id]) == ["delivered", "read", "sent"]
    assert [s.status for s in by_id[reaction.id]] == ["sent"]
    sent = next(s for s in by_id[text.id] if s.status == "sent")
    assert sent.tracker == "key-1" and sent.from_user.wa_id == "15551230001"
    assert sent.from_user.bsuid.startswith("US.")
    assert sent.pricing.model == message_status.PricingModel.PMP
    assert sent.pricing.type == message_status.PricingType.FREE_CUSTOMER_SERVICE
    assert sent.pricing.category == message_status.PricingCategory.SERVICE
    assert sent.conversation is None  # v25.0: no conversation object
    hidden = next(s for s in by_id[to_bsuid.id] if s.status == "delivered")
    assert hidden.from_user.wa_id is None and hidden.from_user.bsuid == BSUID
    assert hidden.from_user.username == "neo"
    no_number = next(u for u in parsed.updates if getattr(u, "text", None) == "no number")
    assert no_number.from_user.bsuid == BSUID and no_number.from_user.wa_id is None


def test_failed_statuses_parse_except_where_pywa_wants_contacts(sim, wa, recorder):
    # Meta's business-scoped-user-ids page: failed statuses carry no contacts[]. pywa 4.5.0's
    # MessageStatus reads value["contacts"][0] unconditionally (types/message_status.py), so it
    # cannot build a failed status; its error types still parse the status's errors[].
    inbound = sim.inbound(**{"from": USER})
    wa.send_reaction(USER, "👍", message_id="wamid.unknown")  # 131009 by webhook
    closed = wa.send_message("+15551230009", "window closed")  # 131047 by webhook
    assert recorder.wait_for(lambda rec: len(rec.statuses()) == 2)
    assert inbound["wamid"]
    codes = {}
    for _, body in recorder.received:
        value = httpx.Response(200, content=body).json()["entry"][0]["changes"][0]["value"]
        for item in value.get("statuses", []):
            assert item["status"] == "failed" and "contacts" not in value
            codes[item["id"]] = errors.WhatsAppError.from_dict(item["errors"][0])
            with pytest.raises(KeyError, match="contacts"):
                types.MessageStatus.from_update(client=wa, update=_raw(body))
    assert type(codes[closed.id]) is errors.ReEngagementMessage
    assert {type(e) for e in codes.values()} == {
        errors.ReEngagementMessage,
        errors.InvalidParameter,
    }


@pytest.mark.parametrize("code", sorted(ASYNC_EXCEPTIONS))
def test_asynchronous_errors_parse_into_pywas_exception(sim, wa, recorder, code):
    sim.inbound(**{"from": USER})
    sim.session.post(f"{sim.url}/_sim/faults", json={"error_rates": {str(code): 1.0}})
    sent = wa.send_message(USER, "accepted, then failed")
    assert recorder.wait_for(lambda rec: rec.statuses())
    [item] = [s for s in recorder.statuses() if s["id"] == sent.id]
    error = errors.WhatsAppError.from_dict(item["errors"][0])
    assert type(error) is ASYNC_EXCEPTIONS[code] and error.code == code and error.details


def _raw(body: bytes) -> RawUpdate:
    return RawUpdate(body, hmac_header=None, update_hash=None)


# --- media round-trips through pywa's own upload and download ----------------------------------


def test_media_round_trips_through_pywas_upload_and_download(sim, wa, tmp_path):
    data = b"%PDF-1.7 simulated document \x00\x01\x02"
    media_id = wa.upload_media(data, mime_type="application/pdf", filename="a.pdf").id
    url = wa.get_media_url(media_id)
    assert url.mime_type == "application/pdf" and url.file_size == len(data)
    assert wa.get_media_bytes(url.url) == data
    path = wa.download_media(url=url.url, path=tmp_path, filename="copy.pdf")
    assert path.read_bytes() == data
    assert wa.delete_media(media_id).success
    with pytest.raises(errors.WhatsAppError):
        wa.get_media_url(media_id)


def test_inbound_media_downloads_with_pywa(sim, wa, recorder):
    sim.inbound(**{"from": USER, "type": "image", "data": "pixels"})
    assert recorder.wait_for(lambda rec: rec.received)
    parsed = Parsed(client_for(sim))
    [message] = parsed.feed(*recorder.received[0])
    assert message.image.mime_type == "image/jpeg"
    assert message.image.get_bytes() == b"pixels"


# --- business endpoints and templates through pywa ---------------------------------------------


def test_business_phone_number_and_account_parse(sim, wa):
    phone = wa.get_business_phone_number()
    assert phone.id == HOME.phone_number_id and phone.quality_rating == "GREEN"
    assert phone.platform_type == "CLOUD_API" and phone.throughput == {"level": "STANDARD"}
    assert [p.id for p in wa.get_business_phone_numbers()] == [HOME.phone_number_id]
    account = wa.get_business_account()
    assert account.id == HOME.waba_id and account.name


def test_templates_list_with_pywa_and_page_through(sim, wa):
    for i in range(3):
        r = sim.session.post(
            f"{sim.url}/v25.0/{HOME.waba_id}/message_templates",
            json={"name": f"t_{i}", "language": "en_US", "category": "UTILITY"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200
    first = wa.get_templates(pagination=types.Pagination(limit=2))
    assert first.total_count == 4 and first.message_template_limit > 0
    assert [t.name for t in first] == ["hello_world", "t_0"] and first.has_next
    # pywa 4.5.0's TemplatesResult.next() breaks (its __init__ takes no item_factory), so the
    # next page is asked with the `after` cursor, which is what next() would follow.
    rest = wa.get_templates(pagination=types.Pagination(after=first.after, limit=2))
    assert [t.name for t in rest] == ["t_1", "t_2"] and not rest.has_next and rest.has_previous
    assert {t.parameter_format for t in (*first, *rest)} == {ParamFormat.POSITIONAL}


# --- tokens through pywa -----------------------------------------------------------------------


def test_app_access_token_and_an_expired_token_through_pywa(sim, wa):
    app = wa.get_app_access_token(app_id=1234567890, app_secret=APP_SECRET)
    assert app == f"1234567890|{APP_SECRET}"  # pywa hands back the access_token itself
    with pytest.raises(errors.WhatsAppError) as caught:
        wa.get_app_access_token(app_id=1234567890, app_secret="wrong")
    assert caught.value.code == 1
    sim.inbound(**{"from": USER})
    r = sim.session.post(f"{sim.url}/_sim/tokens/expire", json={"tenant": "home"})
    assert r.json()["expired"] >= 1
    with pytest.raises(errors.ExpiredAccessToken) as expired:
        wa.send_message(USER, "after expiry")
    assert expired.value.status_code == 401
