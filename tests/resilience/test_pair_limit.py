"""Meta's pair rate limit (131056) for ONE recipient: that user's sends back off, nobody else waits.

The simulator answers every send to one user with 131056, "(Business Account, Consumer
Account) pair rate limit hit" (FACTS F5, F9), while it serves everyone else; a real Celery
worker (in-process, threads) sends over HTTP. The simulator logs each refused call with its
time and idempotency key, so calls per message and the spacing between them are Meta's view,
not ours.
"""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from alfred.outbound import service
from alfred.outbound.pending import outbound_journal
from alfred.simulator.faults import FaultConfig
from alfred.whatsapp.errors import PairRateLimitHit
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import open_window
from tests.resilience.harness import Figures
from tests.resilience.test_graph_faults import _rows

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
HOT = "+447700800001"  # the one user Meta refuses
OTHERS = [f"+4477008{n:05d}" for n in range(2, 21)]
HOT_SENDS = 5  # within our own pair burst (alfred/outbound/ratelimit.py: 5, then 1 per 6 s)
OTHER_SENDS = 38  # two per other user
SENT = {"accepted", "sent", "delivered", "read"}


def _send(to: str, tag: str) -> str:
    from alfred.tasks import send_message

    key = f"{tag}-{uuid.uuid4().hex}"
    send_message.delay(
        {"tenant_id": "biz", "to": to, "type": "text", "text": {"body": key},
         "idempotency_key": key}
    )  # fmt: skip
    return key


@pytest.mark.parametrize(
    ("name", "fault_s", "max_attempts"),
    [
        # Meta lifts the limit after 20 s: every message is sent.
        ("lifted-after-20s", 20.0, service.MAX_ATTEMPTS),
        # Meta never lifts it: the hot user's messages end dead-lettered with send_failed.
        # Three attempts (instead of 8, whose 4^X back-off spans about 15 minutes) keep the
        # scenario within a minute; the path is the same.
        ("never-lifted", None, 3),
    ],
)
def test_pair_limit_for_one_recipient_backs_off_and_spares_the_others(
    meta, celery_worker, env, redis_client, monkeypatch, name, fault_s, max_attempts
):
    monkeypatch.setattr(service, "MAX_ATTEMPTS", max_attempts)
    simulator = meta
    for user in [HOT, *OTHERS]:
        open_window(env["DATABASE_URL"], "biz", user.lstrip("+"))
    simulator.state.set_faults(FaultConfig(recipient_error_rates={HOT.lstrip("+"): {131056: 1.0}}))
    started = time.time()
    hot = [_send(HOT, "hot") for _ in range(HOT_SENDS)]
    others = [_send(OTHERS[i % len(OTHERS)], "other") for i in range(OTHER_SENDS)]
    keys = hot + others
    cleared = None
    if fault_s is not None:
        time.sleep(fault_s)
        simulator.state.set_faults(FaultConfig())
        cleared = time.time()
    wait_for(lambda: outbound_journal(redis_client).size() == 0, 240)
    done = time.time()
    rows = {r.idempotency_key: r for r in _rows(env["DATABASE_URL"], keys)}
    accepted = [m for m in simulator.state.messages(limit=1000) if m["key"] in set(keys)]
    refusals = [r for r in simulator.state.refusals() if r["key"] in set(keys)]
    failed_events = {
        e["envelope"]["id"] for e in stream_entries(redis_client) if e["event"] == "send_failed"
    }
    calls: dict[str, list[float]] = {key: [] for key in keys}
    for record in refusals:
        calls[record["key"]].append(record["at"])
    for message in accepted:
        calls[message["key"]].append(message["accepted_at"])
    hot_calls = sorted(t for key in hot for t in calls[key])
    gaps = [b - a for key in hot for a, b in itertools.pairwise(sorted(calls[key]))]
    window = hot_calls[-1] - hot_calls[0]
    dead = [k for k in hot if rows[k].status == "dead_lettered"]
    figures = Figures(
        f"graph-131056-one-recipient[{name}]",
        messages_in=len(keys),
        messages_out=len([r for r in rows.values() if r.status in SENT]),
        faults=f"131056 for 1 of {1 + len(OTHERS)} users"
        + (f" for {fault_s:g}s" if fault_s else " for good"),
        lost=len(set(keys) - set(rows)),
        duplicated=len(accepted) - len({m["key"] for m in accepted}),
        recovery_s=(done - cleared) if cleared else None,
        notes=(
            f"hot_calls={len(hot_calls)} for {HOT_SENDS} messages"
            f" max_calls_per_message={max(len(calls[k]) for k in hot)}"
            f" min_gap_same_message={min(gaps):.1f}s hot_call_span={window:.0f}s"
            f" others_calls={sum(len(calls[k]) for k in others)} for {len(others)}"
            f" dead_lettered={len(dead)} send_failed_events={len(failed_events & set(keys))}"
            f" elapsed={done - started:.0f}s"
        ),
    )
    figures.report()
    assert figures.lost == 0 and figures.duplicated == 0, figures.line()
    # Nobody else waits: each other message went out on its first call, none was refused.
    assert all(len(calls[k]) == 1 for k in others), figures.line()
    assert all(rows[k].status in SENT for k in others), figures.line()
    assert not failed_events & set(others)
    # The hot user's calls: bounded per message, spaced by at least 131056's own floor (6 s:
    # PairRateLimitHit.min_retry_delay_s) within a message, and together no faster than our
    # pacing of one user (a burst of 5, then one per 6 s): no retry storm.
    floor = PairRateLimitHit.min_retry_delay_s
    assert max(len(calls[k]) for k in hot) <= max_attempts, figures.line()
    assert min(gaps) >= floor * 0.95, figures.line()
    assert len(hot_calls) <= 5 + window / 6.0 + 1, figures.line()
    # Every message ends sent, or dead-lettered with send_failed for the orchestrator.
    for key in hot:
        assert rows[key].status in SENT | {"dead_lettered"}, (key, rows[key].status)
        if rows[key].status == "dead_lettered":
            assert rows[key].error_reason == "pair_rate_limited"
            assert key in failed_events
    if fault_s is None:
        assert len(dead) == HOT_SENDS, figures.line()
    else:
        assert dead == [], figures.line()
