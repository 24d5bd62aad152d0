"""The Graph API as the bridge sees it: answers, errors, limits, window, templates, media."""

from __future__ import annotations

import requests

from tests.simulator.conftest import HOME, USER

BSUID = "US.13491208655302741918"


def assert_meta_error(r: requests.Response, status: int, code: int) -> dict:
    """Check Meta's error body shape and return the error object."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] in ("OAuthException", "GraphMethodException")
    assert len(error["fbtrace_id"]) == 27
    return error


def test_send_answers_with_contacts_and_wamid(sim):
    sim.inbound(**{"from": USER})
    r = sim.text()
    assert r.status_code == 200
    body = r.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": USER, "wa_id": "15551230001"}]
    assert body["messages"][0]["id"].startswith("wamid.")


def test_bsuid_send_answers_with_user_id_and_phone_wins_when_both(sim):
    sim.inbound(user_id=BSUID, username="neo")
    r = sim.send({"recipient": BSUID, "type": "text", "text": {"body": "hi"}})
    assert r.json()["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    both = sim.send(
        {
            "to": USER,
            "recipient": BSUID,
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        }
    )
    assert both.json()["contacts"] == [{"input": USER, "wa_id": "15551230001"}]


def test_wrong_or_missing_token_is_190(sim):
    assert_meta_error(sim.text(token="nope"), 401, 190)
    assert_meta_error(sim.text(token=None), 401, 190)
    # A valid token of another number does not open this one.
    r = sim.send({"to": USER, "type": "text", "text": {"body": "x"}}, token="token-biz")
    assert_meta_error(r, 400, 100)


def test_unknown_phone_number_id_is_100(sim):
    r = sim.send({"to": USER, "type": "text", "text": {"body": "x"}}, phone="999")
    error = assert_meta_error(r, 400, 100)
    assert "Object with ID '999' does not exist" in error["message"]
    assert error["error_subcode"] == 33


def test_invalid_bodies_get_meta_codes(sim):
    missing = assert_meta_error(sim.send({"to": USER, "type": "text"}), 400, 131008)
    assert missing["error_data"]["messaging_product"] == "whatsapp"
    assert missing["error_data"]["details"]
    assert_meta_error(sim.send({"type": "text", "text": {"body": "x"}}), 400, 131008)
    assert_meta_error(sim.text(to="not-a-number"), 400, 131009)
    assert_meta_error(sim.send({"to": USER, "type": "hologram", "hologram": {}}), 400, 100)
    no_product = sim.session.post(
        f"{sim.url}/v25.0/{HOME.phone_number_id}/messages",
        json={"to": USER, "type": "text", "text": {"body": "x"}},
        headers={"Authorization": "Bearer token-home"},
    )
    assert_meta_error(no_product, 400, 100)
    assert sim.stats()["sends"]["rejected"] == {"131008": 2, "131009": 1, "100": 2}


def test_window_closed_is_accepted_then_fails_131047(sim, recorder):
    r = sim.text()
    assert r.status_code == 200
    wamid = r.json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: any(s["id"] == wamid for s in rec.statuses()))
    (status,) = [s for s in recorder.statuses() if s["id"] == wamid]
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131047
    assert status["errors"][0]["error_data"]["details"]
    assert "conversation" not in status and "pricing" not in status
    # After the user writes, the same send is delivered.
    sim.inbound(**{"from": USER, "text": "hi"})
    wamid = sim.text().json()["messages"][0]["id"]
    assert recorder.wait_for(
        lambda rec: (
            [s["status"] for s in rec.statuses() if s["id"] == wamid]
            == ["sent", "delivered", "read"]
        )
    )
    assert sim.stats()["tenants"]["home"]["failed_async"] == {"131047": 1}


def test_not_on_whatsapp_fails_131026(make_sim, recorder):
    sim = make_sim(undeliverable=frozenset({"15559990000"}))
    wamid = sim.send(
        {
            "to": "+1 555 999 0000",
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        }
    ).json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: any(s["id"] == wamid for s in rec.statuses()))
    assert recorder.statuses()[-1]["errors"][0]["code"] == 131026


def test_throughput_over_mps_is_130429(make_sim):
    sim = make_sim(
        enforce_window=False,
        tenants={
            "home": HOME.__class__("home", HOME.phone_number_id, HOME.waba_id, HOME.token, mps=5)
        },
    )
    answers = [sim.text(to=f"+1555000{i:04d}") for i in range(12)]
    codes = [r.json()["error"]["code"] if r.status_code != 200 else 200 for r in answers]
    assert codes.count(200) >= 5 and codes.count(130429) >= 5
    assert {r.status_code for r in answers if r.status_code != 200} == {400}


def test_pair_limit_is_131056_per_recipient(make_sim):
    sim = make_sim(enforce_window=False, pair_burst=3, pair_interval_s=60)
    answers = [sim.text().status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    assert_meta_error(sim.text(), 400, 131056)
    assert sim.text(to="+15557770000").status_code == 200


def test_template_must_exist_and_be_approved(sim):
    hello = {"name": "hello_world", "language": {"code": "en_US"}}
    r = sim.send({"to": USER, "type": "template", "template": hello})
    assert r.status_code == 200 and r.json()["messages"][0]["message_status"] == "accepted"
    missing = {"name": "nope", "language": {"code": "en_US"}}
    error = assert_meta_error(
        sim.send({"to": USER, "type": "template", "template": missing}), 404, 132001
    )
    assert "nope" in error["error_data"]["details"]
    wrong_lang = {"name": "hello_world", "language": {"code": "fr"}}
    assert_meta_error(
        sim.send({"to": USER, "type": "template", "template": wrong_lang}), 404, 132001
    )


def test_created_template_is_pending_then_approved_by_webhook(sim, recorder):
    url = f"{sim.url}/v25.0/{HOME.waba_id}/message_templates"
    headers = {"Authorization": "Bearer token-home"}
    spec = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Order {{1}} shipped"}],
    }
    created = sim.session.post(url, json=spec, headers=headers).json()
    assert created["status"] == "PENDING" and created["id"]
    send = {
        "to": USER,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}},
    }
    assert_meta_error(sim.send(send), 404, 132001)  # not approved yet

    def approved(rec):
        return any(
            c["field"] == "message_template_status_update"
            for p in rec.payloads()
            for e in p["entry"]
            for c in e["changes"]
        )

    assert recorder.wait_for(approved)
    (update,) = [
        (e, c)
        for p in recorder.payloads()
        for e in p["entry"]
        for c in e["changes"]
        if c["field"] == "message_template_status_update"
    ]
    entry, change = update
    assert entry["id"] == HOME.waba_id and isinstance(entry["time"], int)
    assert change["value"]["event"] == "APPROVED"
    assert change["value"]["message_template_id"] == int(created["id"])
    assert sim.send(send).status_code == 200
    listed = sim.session.get(url, params={"name": "order_update"}, headers=headers).json()
    assert [t["status"] for t in listed["data"]] == ["APPROVED"]
    dup = sim.session.post(url, json=spec, headers=headers)
    assert_meta_error(dup, 400, 100)


def test_media_upload_lookup_download(sim):
    headers = {"Authorization": "Bearer token-home"}
    up = sim.session.post(
        f"{sim.url}/v25.0/{HOME.phone_number_id}/media",
        data={"messaging_product": "whatsapp", "type": "image/png"},
        files={"file": ("a.png", b"\x89PNG fake", "image/png")},
        headers=headers,
    )
    assert up.status_code == 200, up.text
    media_id = up.json()["id"]
    info = sim.session.get(f"{sim.url}/v25.0/{media_id}", headers=headers).json()
    assert info["id"] == media_id and info["mime_type"] == "image/png"
    assert info["file_size"] == 9 and len(info["sha256"]) == 64
    got = sim.session.get(info["url"], headers=headers)
    assert got.status_code == 200 and got.content == b"\x89PNG fake"
    assert sim.session.get(info["url"]).status_code == 401
    assert (
        sim.session.get(info["url"], headers={"Authorization": "Bearer token-biz"}).status_code
        == 400
    )  # noqa: E501


def test_debug_token_and_exchange_with_grace(make_sim):
    sim = make_sim(token_grace_s=0.3)
    base = f"{sim.url}/v25.0"
    app_token = "1234567890|app-secret-ü"
    info = sim.session.get(
        f"{base}/debug_token", params={"input_token": "token-home", "access_token": app_token}
    ).json()
    assert info["data"]["is_valid"] is True and info["data"]["app_id"] == "1234567890"
    assert (
        info["data"]["expires_at"] == 0 and "whatsapp_business_messaging" in info["data"]["scopes"]
    )
    bad = sim.session.get(
        f"{base}/debug_token", params={"input_token": "x", "access_token": app_token}
    )
    assert bad.json()["data"]["is_valid"] is False
    params = {
        "grant_type": "fb_exchange_token",
        "client_id": "1234567890",
        "client_secret": "app-secret-ü",
        "fb_exchange_token": "token-home",
    }
    wrong = sim.session.get(f"{base}/oauth/access_token", params={**params, "client_secret": "no"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == 1
    new = sim.session.get(f"{base}/oauth/access_token", params=params).json()
    assert new["token_type"] == "bearer" and new["expires_in"] > 0
    sim.inbound(**{"from": USER})
    assert sim.text().status_code == 200  # the old token still works during the grace period
    assert sim.text(to="+15551230002", token=new["access_token"]).status_code == 200
    import time

    time.sleep(0.35)
    assert_meta_error(sim.text(to="+15551230003"), 401, 190)
    assert sim.text(to="+15551230003", token=new["access_token"]).status_code == 200
    after = sim.session.get(
        f"{base}/debug_token", params={"input_token": "token-home", "access_token": app_token}
    ).json()
    assert after["data"]["is_valid"] is False
    fresh = sim.session.get(
        f"{base}/debug_token",
        params={"input_token": new["access_token"], "access_token": app_token},
    ).json()
    assert fresh["data"]["is_valid"] is True and fresh["data"]["expires_at"] > 0


def test_mark_as_read_needs_an_inbound_wamid(sim):
    wamid = sim.inbound(**{"from": USER})["wamid"]
    read = {"status": "read", "message_id": wamid, "typing_indicator": {"type": "text"}}
    r = sim.send(read)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert_meta_error(sim.send({"status": "read", "message_id": "wamid.nope"}), 400, 100)
