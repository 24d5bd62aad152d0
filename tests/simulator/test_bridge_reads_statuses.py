"""The bridge's status reading meets the simulator's status webhooks, batched as under load.

Before the simulator sent `contacts[]` on statuses, the bridge's status-contact matching (the
`username` of a status envelope) never ran against a simulated webhook.
"""

from __future__ import annotations

import time

from alfred.ingest.normalise import normalise_delivery
from alfred.streams import InboundEvent
from tests.simulator.conftest import HOME

USERS = {"+15551230001": "neo", "+15551230002": None, "+15551230003": "trinity"}


def test_status_envelopes_name_each_recipients_username_in_a_batch(make_sim, recorder):
    sim = make_sim(status_delay_s=0.2)
    for phone, username in USERS.items():
        sim.inbound(**{"from": phone, **({"username": username} if username else {})})
    sent = {phone: sim.text(to=phone).json()["messages"][0]["id"] for phone in USERS}
    # Hold the simulator's loop while the statuses fall due, as a busy Meta would: the next
    # tick then posts them together, one batch with several users' contacts.
    sim.handle.state.call(lambda _: time.sleep(1.0))
    assert recorder.wait_for(lambda rec: len(rec.statuses()) >= 9)
    batched = [p for p in recorder.payloads() if len(_statuses(p)) > 1]
    assert batched, "statuses were expected to share a POST"
    envelopes = []
    for payload in recorder.payloads():
        results = normalise_delivery(
            payload,
            tenant_for_phone=lambda pid: "home" if pid == HOME.phone_number_id else None,
            tenant_for_waba=lambda waba: "home" if waba == HOME.waba_id else None,
            received_at=time.time(),
        )
        envelopes += [r.envelope for r in results if isinstance(r, InboundEvent)]
    statuses = [e for e in envelopes if e["event"] == "status"]
    assert len(statuses) == 9
    for phone, username in USERS.items():
        mine = {e["status"]: e for e in statuses if e["id"] == sent[phone]}
        assert set(mine) == {"sent", "delivered", "read"}
        # One contact per user in a POST: a sent status batched with the user's delivered one
        # shares its username (test_fidelity checks a lone sent status carries none).
        assert mine["delivered"]["username"] == username
        assert mine["read"]["username"] == username
        assert mine["read"]["user_id"].startswith("US.")


def _statuses(payload: dict) -> list:
    return [
        s for e in payload["entry"] for c in e["changes"] for s in c["value"].get("statuses", [])
    ]
