"""The simulator's token and media fault hooks, and its app access token."""

from __future__ import annotations

import hashlib

import requests

from tests.simulator.conftest import APP_SECRET, TOKEN

APP_TOKEN = f"1234567890|{APP_SECRET}"


def post(sim, path: str, body: dict) -> requests.Response:
    return sim.session.post(f"{sim.url}{path}", json=body)


def debug(sim, token: str) -> dict:
    params = {"input_token": token, "access_token": APP_TOKEN}
    return sim.session.get(f"{sim.url}/v25.0/debug_token", params=params).json()["data"]


def test_client_credentials_give_the_app_access_token(sim):
    params = {"grant_type": "client_credentials", "client_id": "1234567890",
              "client_secret": APP_SECRET}  # fmt: skip
    r = sim.session.get(f"{sim.url}/v25.0/oauth/access_token", params=params)
    assert r.json() == {"access_token": APP_TOKEN, "token_type": "bearer"}
    wrong = sim.session.get(
        f"{sim.url}/v25.0/oauth/access_token", params={**params, "client_secret": "no"}
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == 1


def test_revoking_one_token_leaves_the_others(sim):
    assert post(sim, "/_sim/tokens/revoke", {"token": TOKEN}).json() == {"revoked": 1}
    assert sim.text().status_code == 401
    assert debug(sim, TOKEN)["is_valid"] is False
    assert debug(sim, "token-biz")["is_valid"] is True
    assert post(sim, "/_sim/tokens/revoke", {"token": "nope"}).status_code == 400


def test_debug_token_faults_spoil_the_next_answers_only(sim):
    post(sim, "/_sim/tokens/faults", {"invalid_next": 1, "no_scope_next": 1})
    first = debug(sim, TOKEN)
    assert first["is_valid"] is False and "whatsapp_business_messaging" not in first["scopes"]
    second = debug(sim, TOKEN)
    assert second["is_valid"] is True and "whatsapp_business_messaging" in second["scopes"]


def test_media_made_by_size_downloads_streamed_and_spoiled_on_request(sim):
    made = post(sim, "/_sim/media", {"tenant": "home", "size": 700_000}).json()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    info = sim.session.get(f"{sim.url}/v25.0/{made['id']}", headers=auth).json()
    assert (info["sha256"], info["file_size"]) == (made["sha256"], 700_000)
    whole = sim.session.get(info["url"], headers=auth)
    assert hashlib.sha256(whole.content).hexdigest() == made["sha256"]
    assert whole.headers["Content-Length"] == "700000"
    post(sim, "/_sim/media/faults", {"corrupt_next": 1, "fail_next": 1, "expire_next": 1})
    assert sim.session.get(info["url"], headers=auth).status_code == 404  # expired first
    assert sim.session.get(info["url"], headers=auth).status_code == 500
    corrupt = sim.session.get(info["url"], headers=auth)
    assert hashlib.sha256(corrupt.content).hexdigest() != made["sha256"]
    post(sim, "/_sim/media/faults", {"cut_next": 1})
    cut = sim.session.get(info["url"], headers=auth, stream=True)
    try:
        got = len(b"".join(cut.iter_content(65536)))
    except requests.RequestException:
        got = -1  # the connection dropped mid-body: as good as short
    assert got < 700_000
    counters = post(sim, "/_sim/media/faults", {}).json()
    assert counters["downloads"] == 2  # served to the end: the first and the corrupted one


def test_a_media_url_past_its_five_minutes_answers_404(sim):
    post(sim, "/_sim/media/faults", {"url_ttl_s": -1})
    made = post(sim, "/_sim/media", {"tenant": "home", "data": "x"}).json()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    info = sim.session.get(f"{sim.url}/v25.0/{made['id']}", headers=auth).json()
    assert sim.session.get(info["url"], headers=auth).status_code == 404
