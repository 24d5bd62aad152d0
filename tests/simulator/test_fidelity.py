"""Behaviours checked against Meta's pages: statuses, reactions, templates, errors, pricing."""

from __future__ import annotations

import requests

from tests.simulator.conftest import HOME, USER

BSUID = "US.13491208655302741918"
AUTH = {"Authorization": "Bearer token-home"}


def status_values(recorder, wamid: str) -> list[tuple[dict, dict]]:
    """Return (status item, the change value it came in) for each status of a wamid."""
    found = []
    for payload in recorder.payloads():
        for entry in payload["entry"]:
            for change in entry["changes"]:
                for item in change["value"].get("statuses", []):
                    if item["id"] == wamid:
                        found.append((item, change["value"]))
    return found


def wamid_of(r: requests.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["messages"][0]["id"]


# --- statuses carry contacts (business-scoped-user-ids; webhooks/reference/messages/status) ---


def test_sent_delivered_read_carry_the_recipients_contact(sim, recorder):
    sim.inbound(**{"from": USER, "username": "neo"})
    wamid = wamid_of(sim.text())
    assert recorder.wait_for(lambda rec: len(status_values(rec, wamid)) == 3)
    by_status = {item["status"]: value for item, value in status_values(recorder, wamid)}
    user_id = status_values(recorder, wamid)[0][0]["recipient_user_id"]
    assert by_status["sent"]["contacts"] == [{"wa_id": "15551230001", "user_id": user_id}]
    for status in ("delivered", "read"):
        assert by_status[status]["contacts"] == [
            {"wa_id": "15551230001", "user_id": user_id, "profile": {"username": "neo"}}
        ]


def test_a_user_who_hid_the_number_gets_a_contact_without_wa_id(sim, recorder):
    sim.inbound(user_id=BSUID, username="trinity")
    wamid = wamid_of(sim.send({"recipient": BSUID, "type": "text", "text": {"body": "hi"}}))
    assert recorder.wait_for(lambda rec: len(status_values(rec, wamid)) == 3)
    for item, value in status_values(recorder, wamid):
        assert "recipient_id" not in item
        assert value["contacts"][0]["user_id"] == BSUID
        assert "wa_id" not in value["contacts"][0]


def test_failed_statuses_carry_no_contacts(sim, recorder):
    wamid = wamid_of(sim.text())  # no inbound: the window is closed, so 131047
    assert recorder.wait_for(lambda rec: status_values(rec, wamid))
    [(item, value)] = status_values(recorder, wamid)
    assert item["status"] == "failed" and item["errors"][0]["code"] == 131047
    assert "contacts" not in value
    assert "pricing" not in item and "conversation" not in item


# --- reactions (messages/reaction-messages) ---


def test_a_reaction_gets_only_a_sent_status(sim, recorder):
    inbound = sim.inbound(**{"from": USER})
    reaction = {"message_id": inbound["wamid"], "emoji": "👍"}
    wamid = wamid_of(sim.send({"to": USER, "type": "reaction", "reaction": reaction}))
    text = wamid_of(sim.text())  # a later message's statuses prove the reaction's are over
    assert recorder.wait_for(lambda rec: len(status_values(rec, text)) == 3)
    assert [item["status"] for item, _ in status_values(recorder, wamid)] == ["sent"]


def test_a_reaction_to_an_unknown_message_fails_with_131009(sim, recorder):
    sim.inbound(**{"from": USER})
    reaction = {"message_id": "wamid.nothing-like-this", "emoji": "👍"}
    r = sim.send({"to": USER, "type": "reaction", "reaction": reaction})
    wamid = wamid_of(r)  # accepted: Meta reports it by webhook
    assert recorder.wait_for(lambda rec: status_values(rec, wamid))
    [(item, value)] = status_values(recorder, wamid)
    assert item["status"] == "failed"
    assert item["errors"][0]["code"] == 131009
    assert item["errors"][0]["error_data"]["details"]
    assert "contacts" not in value


def test_reacting_to_a_reaction_fails_too(sim, recorder):
    inbound = sim.inbound(**{"from": USER})
    first = {"message_id": inbound["wamid"], "emoji": "👍"}
    reaction_id = wamid_of(sim.send({"to": USER, "type": "reaction", "reaction": first}))
    again = {"message_id": reaction_id, "emoji": "❤️"}
    wamid = wamid_of(sim.send({"to": USER, "type": "reaction", "reaction": again}))
    assert recorder.wait_for(lambda rec: status_values(rec, wamid))
    assert status_values(recorder, wamid)[0][0]["errors"][0]["code"] == 131009


# --- pricing and conversation (webhooks/reference/messages/status, pricing) ---


def test_pricing_is_per_message_and_conversation_only_before_v24(sim, recorder):
    sim.inbound(**{"from": USER})
    new = wamid_of(sim.text())
    old = wamid_of(
        sim.session.post(
            f"{sim.url}/v23.0/{HOME.phone_number_id}/messages",
            json={"messaging_product": "whatsapp", "to": USER, "text": {"body": "x"}},
            headers=AUTH,
        )
    )
    assert recorder.wait_for(lambda rec: len(status_values(rec, old)) == 3)
    assert recorder.wait_for(lambda rec: len(status_values(rec, new)) == 3)
    for wamid in (new, old):
        by_status = {item["status"]: item for item, _ in status_values(recorder, wamid)}
        assert by_status["sent"]["pricing"] == {
            "billable": False,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        }
        assert "pricing" in by_status["delivered"] and "pricing" not in by_status["read"]
    new_sent = next(i for i, _ in status_values(recorder, new) if i["status"] == "sent")
    old_sent = next(i for i, _ in status_values(recorder, old) if i["status"] == "sent")
    assert "conversation" not in new_sent
    assert old_sent["conversation"]["origin"] == {"type": "service"}
    assert int(old_sent["conversation"]["expiration_timestamp"]) > int(old_sent["timestamp"])


def test_a_marketing_template_is_billed_regular(sim, recorder):
    created = sim.session.post(
        f"{sim.url}/v25.0/{HOME.waba_id}/message_templates",
        json={"name": "promo", "language": "en_US", "category": "MARKETING", "components": []},
        headers=AUTH,
    )
    assert created.status_code == 200
    assert recorder.wait_for(
        lambda rec: any(
            c["field"] == "message_template_status_update"
            for p in rec.payloads()
            for e in p["entry"]
            for c in e["changes"]
        )
    )
    template = {"name": "promo", "language": {"code": "en_US"}}
    wamid = wamid_of(sim.send({"to": USER, "type": "template", "template": template}))
    assert recorder.wait_for(lambda rec: len(status_values(rec, wamid)) == 3)
    sent = next(i for i, _ in status_values(recorder, wamid) if i["status"] == "sent")
    assert sent["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }


# --- templates listing (whatsapp-business-account/message_templates reference) ---


def _templates(sim, **params) -> requests.Response:
    return sim.session.get(
        f"{sim.url}/v25.0/{HOME.waba_id}/message_templates", params=params, headers=AUTH
    )


def _create(sim, name: str, **extra) -> dict:
    body = {"name": name, "language": "en_US", "category": "UTILITY", "components": [], **extra}
    r = sim.session.post(
        f"{sim.url}/v25.0/{HOME.waba_id}/message_templates", json=body, headers=AUTH
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_templates_honour_fields_and_summary(sim):
    _create(sim, "order_ready", parameter_format="NAMED")
    r = _templates(sim, fields="name,parameter_format", summary="total_count,nonsense")
    body = r.json()
    assert body["summary"] == {"total_count": 2}
    assert {tuple(sorted(t)) for t in body["data"]} == {("id", "name", "parameter_format")}
    formats = {t["name"]: t["parameter_format"] for t in body["data"]}
    assert formats == {"hello_world": "POSITIONAL", "order_ready": "NAMED"}
    unknown = _templates(sim, fields="name,colour")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100
    bad_format = sim.session.post(
        f"{sim.url}/v25.0/{HOME.waba_id}/message_templates",
        json={"name": "x", "language": "en_US", "category": "UTILITY", "parameter_format": "odd"},
        headers=AUTH,
    )
    assert bad_format.status_code == 400


def test_templates_page_with_limit_and_after_cursors(sim):
    for i in range(4):
        _create(sim, f"t_{i}")
    seen, page = [], _templates(sim, limit=2, fields="name").json()
    pages = 1
    while True:
        seen += [t["name"] for t in page["data"]]
        if "next" not in page["paging"]:
            break
        after = page["paging"]["cursors"]["after"]
        assert f"after={after}" in page["paging"]["next"]
        page = _templates(sim, limit=2, fields="name", after=after).json()
        pages += 1
    assert seen == ["hello_world", "t_0", "t_1", "t_2", "t_3"] and pages == 3
    # Following `next` as a client does gives the same second page.
    first = _templates(sim, limit=2).json()
    second = sim.session.get(first["paging"]["next"], headers=AUTH).json()
    assert [t["name"] for t in second["data"]] == ["t_1", "t_2"]
    assert "previous" in second["paging"]
    assert _templates(sim, after="garbage").json()["error"]["code"] == 100


# --- error bodies (support/error-codes; Graph API error handling) ---


def test_error_bodies_have_meta_shape(sim):
    r = sim.send({"to": USER, "type": "text", "text": {"body": "x" * 4097}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["code"] == 131009 and error["type"] == "OAuthException"
    assert error["message"].startswith("(#131009)")
    assert "text.body" in error["error_data"]["details"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
