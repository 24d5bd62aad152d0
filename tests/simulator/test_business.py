"""Business management endpoints that `doctor` reads: phone number, WABA, subscribed apps."""

from __future__ import annotations

from tests.simulator.conftest import BIZ, HOME

AUTH = {"Authorization": "Bearer token-home"}


def get(sim, path: str, token: str | None = HOME.token.reveal(), **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return sim.session.get(f"{sim.url}/v25.0/{path}", params=params, headers=headers)


def test_phone_number_default_fields_and_asked_fields(sim):
    r = get(sim, HOME.phone_number_id)
    assert r.status_code == 200
    assert r.json() == {
        "verified_name": "Alfred home",
        "code_verification_status": "VERIFIED",
        "display_phone_number": "+1 555-111-0001",
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": HOME.phone_number_id,
    }
    asked = get(sim, HOME.phone_number_id, fields="status,quality_rating,messaging_limit_tier")
    assert asked.json() == {
        "status": "CONNECTED",
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_1K",
        "id": HOME.phone_number_id,
    }
    unknown = get(sim, HOME.phone_number_id, fields="colour")
    assert unknown.status_code == 400
    assert "nonexisting field (colour)" in unknown.json()["error"]["message"]


def test_phone_number_needs_a_token_for_that_number(sim):
    assert get(sim, HOME.phone_number_id, token=None).status_code == 401
    other = get(sim, BIZ.phone_number_id)  # the home token may not read biz's number
    assert other.status_code == 400 and other.json()["error"]["error_subcode"] == 33


def test_waba_and_its_phone_numbers(sim):
    waba = get(sim, HOME.waba_id).json()
    assert waba["id"] == HOME.waba_id and waba["name"]
    numbers = get(sim, f"{HOME.waba_id}/phone_numbers", fields="id,display_phone_number").json()
    assert numbers["data"] == [
        {"id": HOME.phone_number_id, "display_phone_number": "+1 555-111-0001"}
    ]
    assert set(numbers["paging"]["cursors"]) == {"before", "after"}


def test_subscribed_apps_subscribe_and_unsubscribe(sim):
    path = f"{HOME.waba_id}/subscribed_apps"
    [app] = get(sim, path).json()["data"]
    assert app["whatsapp_business_api_data"]["id"] == "1234567890"
    deleted = sim.session.delete(f"{sim.url}/v25.0/{path}", headers=AUTH)
    assert deleted.json() == {"success": True}
    assert get(sim, path).json() == {"data": []}
    posted = sim.session.post(f"{sim.url}/v25.0/{path}", headers=AUTH)
    assert posted.json() == {"success": True}
    assert len(get(sim, path).json()["data"]) == 1
    override = sim.session.post(
        f"{sim.url}/v25.0/{path}",
        json={"override_callback_uri": "https://example.org/hook", "verify_token": "v"},
        headers=AUTH,
    )
    assert override.status_code == 200
    assert get(sim, path).json()["data"][0]["override_callback_uri"] == "https://example.org/hook"
    no_verify = sim.session.post(
        f"{sim.url}/v25.0/{path}", json={"override_callback_uri": "https://x.org"}, headers=AUTH
    )
    assert no_verify.status_code == 400


def test_control_hook_unsubscribes_and_degrades_the_number(sim):
    r = sim.session.post(
        f"{sim.url}/_sim/business",
        json={"tenant": "home", "subscribed": False, "phone": {"quality_rating": "RED"}},
    )
    assert r.status_code == 200 and r.json()["subscribed"] is False
    assert get(sim, f"{HOME.waba_id}/subscribed_apps").json() == {"data": []}
    assert get(sim, HOME.phone_number_id).json()["quality_rating"] == "RED"
    # The other tenant is untouched, and a reset restores the starting point.
    biz = sim.session.get(
        f"{sim.url}/v25.0/{BIZ.waba_id}/subscribed_apps",
        headers={"Authorization": "Bearer token-biz"},
    )
    assert len(biz.json()["data"]) == 1
    assert (
        sim.session.post(f"{sim.url}/_sim/business", json={"tenant": "nobody"}).status_code == 400
    )
    bad = sim.session.post(
        f"{sim.url}/_sim/business", json={"tenant": "home", "phone": {"colour": "x"}}
    )
    assert bad.status_code == 400
    sim.session.post(f"{sim.url}/_sim/reset")
    assert len(get(sim, f"{HOME.waba_id}/subscribed_apps").json()["data"]) == 1
    assert get(sim, HOME.phone_number_id).json()["quality_rating"] == "GREEN"


def test_media_lookup_still_answers_other_ids(sim):
    # The per-id routes must not swallow GET /{version}/{media_id}.
    r = get(sim, "424242")
    assert r.status_code == 400 and r.json()["error"]["error_subcode"] == 33
