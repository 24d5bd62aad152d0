"""Callbacks (signed, batched, retried), injected faults, duplicate detection, control API."""

from __future__ import annotations

import json
import time

import pytest
import requests

from alfred.config import Secret
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.faults import FaultConfig
from alfred.whatsapp.signature import verify
from tests.simulator.conftest import APP_SECRET, HOME, USER

HELLO = {"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}


def statuses_of(recorder, wamid: str) -> list[str]:
    """Return the statuses received for one message, in arrival order."""
    return [s["status"] for s in recorder.statuses() if s["id"] == wamid]


def test_callbacks_are_signed_over_the_wire_bytes(sim, recorder):
    sim.inbound(**{"from": USER, "profile_name": "Zoë 🎉", "text": "héllo 👋"})
    wamid = sim.text(body="ça va? 🙂", biz_opaque_callback_data="key-1").json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: len(statuses_of(rec, wamid)) == 3)
    for headers, body in recorder.received:
        assert verify(body, headers["X-Hub-Signature-256"], [Secret(APP_SECRET)])
        assert not verify(body, headers["X-Hub-Signature-256"], [Secret("other")])
    inbound = recorder.payloads()[0]["entry"][0]["changes"][0]["value"]
    assert inbound["contacts"][0]["profile"]["name"] == "Zoë 🎉"
    assert inbound["messages"][0]["text"]["body"] == "héllo 👋"
    sent = next(s for s in recorder.statuses() if s["status"] == "sent")
    assert sent["biz_opaque_callback_data"] == "key-1"
    assert sent["recipient_id"] == "15551230001" and sent["recipient_user_id"].startswith("US.")
    assert sent["pricing"]["category"] == "service"
    assert "conversation" not in sent  # webhook v24.0 and later carry none
    assert abs(int(sent["timestamp"]) - time.time()) < 5
    value = recorder.payloads()[-1]["entry"][0]["changes"][0]["value"]
    assert value["metadata"]["phone_number_id"] == HOME.phone_number_id


def test_statuses_are_batched_into_few_posts(make_sim, recorder):
    sim = make_sim(enforce_window=False, status_delay_s=0.05)
    for i in range(20):
        assert sim.send({"to": f"+1555100{i:04d}", **HELLO}).status_code == 200
    assert recorder.wait_for(lambda rec: len(rec.statuses()) == 60)
    assert len(recorder.received) < 30


def test_non_2xx_is_retried_then_delivered(make_sim, recorder):
    # One status per POST: on a busy machine two may fall due in one tick and share a POST.
    sim = make_sim(batch_statuses=False)
    recorder.fail_next = 2
    wamid = sim.send({"to": USER, **HELLO}).json()["messages"][0]["id"]
    # The recorder keeps refused POSTs too: 3 statuses + 2 redeliveries.
    assert recorder.wait_for(lambda rec: len(statuses_of(rec, wamid)) == 5)
    assert set(statuses_of(recorder, wamid)) == {"sent", "delivered", "read"}
    webhooks = sim.stats()["webhooks"]
    assert webhooks["retried"] == 2 and webhooks["non_2xx"] == 2 and webhooks["failed"] == 0


def test_retries_exhausted_are_counted_as_failed(make_sim, recorder):
    sim = make_sim(status_flow=("sent",))
    recorder.fail_next = 3  # first try + 2 retries
    sim.send({"to": USER, **HELLO})
    assert recorder.wait_for(lambda rec: len(rec.received) == 3)
    time.sleep(0.1)
    webhooks = sim.stats()["webhooks"]
    assert webhooks["failed"] == 1 and webhooks["retried"] == 2 and webhooks["delivered"] == 0


def test_connection_refused_is_retried_and_counted(make_sim):
    # One status per POST: on a busy machine two statuses may fall due in one tick and share one.
    sim = make_sim(
        webhook_url="http://127.0.0.1:9/webhook",
        webhook_retry_schedule=(0.01,),
        batch_statuses=False,
    )
    sim.send({"to": USER, **HELLO})
    deadline = time.monotonic() + 3
    while sim.stats()["webhooks"]["failed"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["webhooks"]["connection_errors"] >= 6


def test_duplicate_keys_are_reported(sim):
    sim.send({"to": USER, "biz_opaque_callback_data": "idem-1", **HELLO})
    sim.send({"to": USER, "biz_opaque_callback_data": "idem-1", **HELLO})
    sim.send({"to": USER, "biz_opaque_callback_data": "idem-2", **HELLO})
    dup = sim.stats()["duplicates"]
    assert dup["keys"] == {"idem-1": 2} and dup["count"] == 1 and dup["extra_sends"] == 1
    listed = sim.session.get(f"{sim.url}/_sim/messages", params={"key": "idem-1"}).json()
    assert listed["count"] == 2
    assert listed["data"][0]["body"]["template"]["name"] == "hello_world"
    # A bench run counts its own keys by prefix, whatever else the simulator kept.
    sim.send({"to": USER, **HELLO})  # no key at all
    by_prefix = sim.session.get(f"{sim.url}/_sim/messages", params={"key_prefix": "idem-"})
    assert [m["key"] for m in by_prefix.json()["data"]] == ["idem-1", "idem-1", "idem-2"]


def set_faults(sim, **faults) -> None:
    r = sim.session.post(f"{sim.url}/_sim/faults", json=faults)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("code,status", [(131000, 500), (131016, 503), (368, 403), (130429, 400)])
def test_injected_synchronous_errors(sim, code, status):
    set_faults(sim, error_rates={str(code): 1.0}, seed=1)
    r = sim.send({"to": USER, **HELLO})
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_an_injected_error_for_one_recipient_spares_the_others(sim):
    set_faults(sim, recipient_error_rates={USER.lstrip("+"): {"131056": 1.0}})
    hot = sim.send({"to": USER, "biz_opaque_callback_data": "hot-1", **HELLO})
    assert hot.status_code == 400 and hot.json()["error"]["code"] == 131056
    assert sim.send({"to": "+15551230002", **HELLO}).status_code == 200
    refusals = sim.session.get(f"{sim.url}/_sim/refusals", params={"key": "hot-1"}).json()
    (refusal,) = refusals["data"]
    assert refusal["code"] == 131056 and refusal["wa_id"] == USER.lstrip("+")
    faults = sim.session.get(f"{sim.url}/_sim/faults").json()
    assert faults["recipient_error_rates"] == {USER.lstrip("+"): {"131056": 1.0}}
    bad = sim.session.post(
        f"{sim.url}/_sim/faults", json={"recipient_error_rates": {"1": {"131056": 2}}}
    )
    assert bad.status_code == 400


def test_injected_error_rate_is_roughly_the_rate(make_sim):
    sim = make_sim(faults=FaultConfig(error_rates={131000: 0.3}, seed=7), pair_burst=1000)
    codes = [sim.send({"to": USER, **HELLO}).status_code for _ in range(200)]
    # Sends over the 80 mps budget get 130429 (400) before any fault is drawn.
    ratio = codes.count(500) / (codes.count(500) + codes.count(200))
    assert 0.15 <= ratio <= 0.45


def test_injected_asynchronous_error_fails_by_webhook(sim, recorder):
    set_faults(sim, error_rates={"131026": 1.0})
    r = sim.send({"to": USER, **HELLO})
    assert r.status_code == 200
    wamid = r.json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: statuses_of(rec, wamid) == ["failed"])


def test_injected_latency(sim):
    set_faults(sim, latency_ms=150, jitter_ms=50)
    start = time.monotonic()
    sim.send({"to": USER, **HELLO})
    assert 0.15 <= time.monotonic() - start < 1.0


def test_timeout_holds_the_answer_but_accepts_the_send(sim):
    set_faults(sim, timeout_rate=1.0, timeout_hold_s=1)
    with pytest.raises(requests.Timeout):
        sim.send({"to": USER, "biz_opaque_callback_data": "k", **HELLO}, timeout=0.3)
    assert sim.stats()["sends"]["accepted"] == 1


def test_dropped_connection_answers_nothing(sim):
    set_faults(sim, drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        sim.send({"to": USER, **HELLO})
    assert sim.stats()["sends"]["accepted"] == 0


def test_duplicate_webhooks(sim, recorder):
    set_faults(sim, duplicate_webhook_rate=1.0)
    wamid = sim.send({"to": USER, **HELLO}).json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: len(statuses_of(rec, wamid)) == 6)
    assert sorted(statuses_of(recorder, wamid)) == sorted(["sent", "delivered", "read"] * 2)


def test_out_of_order_statuses(make_sim, recorder):
    # Statuses far enough apart that one POST cannot overtake the one before it on a busy machine.
    sim = make_sim(batch_statuses=False, status_delay_s=0.15)
    set_faults(sim, out_of_order_rate=1.0)
    wamid = sim.send({"to": USER, **HELLO}).json()["messages"][0]["id"]
    assert recorder.wait_for(lambda rec: len(statuses_of(rec, wamid)) == 3)
    assert statuses_of(recorder, wamid) == ["read", "delivered", "sent"]


def test_bad_fault_settings_are_refused(sim):
    assert sim.session.post(f"{sim.url}/_sim/faults", json={"drop_rate": 2}).status_code == 400
    assert sim.session.post(f"{sim.url}/_sim/faults", json={"nonsense": 1}).status_code == 400


def test_inbound_variants_and_batch(sim, recorder):
    hidden = sim.inbound(user_id="US.13491208655302741918", username="neo", text="hey")
    msg = hidden["payload"]["entry"][0]["changes"][0]["value"]
    assert "from" not in msg["messages"][0] and "wa_id" not in msg["contacts"][0]
    assert msg["contacts"][0]["profile"]["username"] == "neo"
    image = sim.inbound(**{"from": USER, "type": "image", "caption": "look"})
    media = image["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["image"]
    assert media["caption"] == "look"
    info = sim.session.get(
        f"{sim.url}/v25.0/{media['id']}", headers={"Authorization": "Bearer token-home"}
    ).json()
    assert sim.session.get(info["url"], headers={"Authorization": "Bearer token-home"}).ok
    batch = [
        {"tenant": "home", "from": f"+1555200{i:04d}", "type": t}
        for i, t in enumerate(["location", "interactive", "button", "text"])
    ]
    r = sim.session.post(f"{sim.url}/_sim/inbound/batch", json={"messages": batch})
    assert len(r.json()["wamids"]) == 4
    assert recorder.wait_for(lambda rec: len(rec.received) == 6)
    bad = sim.session.post(f"{sim.url}/_sim/inbound", json={"tenant": "nope", "from": USER})
    assert bad.status_code == 400


def test_reset_and_messages_filter(sim):
    sim.send({"to": USER, **HELLO})
    sim.session.post(f"{sim.url}/_sim/faults", json={"drop_rate": 0.5})
    listed = sim.session.get(f"{sim.url}/_sim/messages", params={"tenant": "home"}).json()
    assert listed["count"] == 1 and listed["data"][0]["to"] == USER
    assert sim.handle.state.messages("home")[0]["wamid"] == listed["data"][0]["wamid"]
    assert sim.session.post(f"{sim.url}/_sim/reset").ok
    stats = sim.stats()
    assert stats["sends"]["accepted"] == 0 and stats["faults"]["drop_rate"] == 0


def test_expired_tokens_via_control(sim):
    sim.session.post(f"{sim.url}/_sim/tokens/expire", json={"tenant": "home"})
    r = sim.send({"to": USER, **HELLO})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_config_from_env():
    env = {
        "ALFRED_TENANTS": json.dumps(
            {"home": {"phone_number_id": "1", "waba_id": "2", "token": "t", "mps": 5}}
        ),
        "META_APP_SECRET": "s",
        "SIMULATOR_WEBHOOK_URL": "http://x/webhook",
        "SIMULATOR_FAULTS": json.dumps({"error_rates": {"131000": 0.1}, "seed": 3}),
        "SIMULATOR_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2",
        "SIMULATOR_UNDELIVERABLE": "+1 555 000 1111",
        "SIMULATOR_ENFORCE_WINDOW": "false",
    }
    cfg = SimulatorConfig.from_env(env)
    assert cfg.tenants["home"].mps == 5 and cfg.app_secret == "s"
    assert cfg.faults.error_rates == {131000: 0.1} and cfg.faults.seed == 3
    assert cfg.webhook_retry_schedule == (0.1, 0.2)
    assert cfg.undeliverable == frozenset({"15550001111"}) and cfg.enforce_window is False
