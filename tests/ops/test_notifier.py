"""The in-app notifier pages a local PagerDuty stand-in: trigger on start, resolve on clear.

Real Redis holds the notifier's state and history; real HTTP reaches the receiver. Only the
clock is moved: each evaluation is given its time and the metrics it would have read.
"""

from __future__ import annotations

import pytest

from alfred.config import OpsSettings, Secret
from alfred.operations.conditions import key
from alfred.operations.notifier import STATE_KEY, Notifier
from alfred.operations.pagerduty import EventsClient
from tests.ops.pagerduty_receiver import Receiver

T0 = 1_800_000_000.0
DAY = 86400.0
OPS = OpsSettings(alert_window_s=300.0, alert_send_failure_ratio=0.10)


def sends(tenant: str, sent: float, failed: float = 0, dead: float = 0) -> dict:
    return {
        key("alfred_sends_total", tenant=tenant, outcome="sent"): sent,
        key("alfred_sends_total", tenant=tenant, outcome="failed"): failed,
        key("alfred_sends_total", tenant=tenant, outcome="dead_lettered"): dead,
    }


def gauge(name: str, value: float, **labels) -> dict:
    return {key(name, **labels): value}


# condition -> its dedup key, and (seconds after T0, metrics then) evaluations that start it
# (the last of `starts`) and then clear it (the last of `clears`).
SCENARIOS = {
    "send_failures": (
        "alfred:home:send_failures",
        [(0, sends("home", 0) | sends("biz", 0)), (60, sends("home", 8, 2) | sends("biz", 19, 1))],
        [(120, sends("home", 16, 4) | sends("biz", 38, 1)), (500, sends("home", 116, 4))],
    ),
    "quality": (
        "alfred:home:quality",
        [
            (0, gauge("alfred_phone_quality_rating", 3, tenant="home")),
            (60, gauge("alfred_phone_quality_rating", 2, tenant="home")),
        ],
        [(120, gauge("alfred_phone_quality_rating", 3, tenant="home"))],
    ),
    "token_expiry": (
        "alfred:biz:token",
        [
            (0, gauge("alfred_token_expiry_timestamp_seconds", T0 + 8 * DAY, tenant="biz")),
            (1.5 * DAY, gauge("alfred_token_expiry_timestamp_seconds", T0 + 8 * DAY, tenant="biz")),
        ],
        [(1.6 * DAY, gauge("alfred_token_expiry_timestamp_seconds", T0 + 60 * DAY, tenant="biz"))],
    ),
    "token_rotation": (
        "alfred:home:token",
        [
            (0, gauge("alfred_token_rotations_total", 0, tenant="home", outcome="failed")),
            (60, gauge("alfred_token_rotations_total", 1, tenant="home", outcome="failed")),
        ],
        [
            (2000, gauge("alfred_token_rotations_total", 1, tenant="home", outcome="failed")),
            (4000, gauge("alfred_token_rotations_total", 1, tenant="home", outcome="failed")),
        ],
    ),
    "quarantine": (
        "alfred:all:quarantine",
        [(t, gauge("alfred_quarantined_total", t / 60, reason="stale")) for t in range(0, 661, 60)],
        [
            (1000, gauge("alfred_quarantined_total", 12, reason="stale")),
            (1400, gauge("alfred_quarantined_total", 12, reason="stale")),
        ],
    ),
    "dead_letters": (
        "alfred:biz:dead_letters",
        [(t, sends("biz", 100 * t, dead=t / 60)) for t in range(0, 661, 60)],
        [(1000, sends("biz", 100_000, dead=12)), (1400, sends("biz", 140_000, dead=12))],
    ),
    "ingest_lag": (
        "alfred:all:ingest_lag",
        [
            (0, gauge("alfred_queue_oldest_age_seconds", 5, queue="ingest")),
            (60, gauge("alfred_queue_oldest_age_seconds", 90, queue="ingest")),
        ],
        [(120, gauge("alfred_queue_oldest_age_seconds", 0, queue="ingest"))],
    ),
    "process_down": (
        "alfred:all:process_down",
        [
            (0, gauge("alfred_process_heartbeat_timestamp_seconds", T0, process="outbox")),
            (120, gauge("alfred_process_heartbeat_timestamp_seconds", T0, process="outbox")),
        ],
        [(180, gauge("alfred_process_heartbeat_timestamp_seconds", T0 + 178, process="outbox"))],
    ),
    "task_overrun": (
        "alfred:all:task_overrun",
        [
            (0, gauge("alfred_task_overruns_total", 0, task="alfred.send_message")),
            (60, gauge("alfred_task_overruns_total", 1, task="alfred.send_message")),
        ],
        [
            (120, gauge("alfred_task_overruns_total", 1, task="alfred.send_message")),
            (500, gauge("alfred_task_overruns_total", 1, task="alfred.send_message")),
        ],
    ),
}


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def notifier(redis_client, receiver, **client_options) -> Notifier:
    events = EventsClient(
        receiver.url,
        Secret("test-routing-key"),
        source="alfred-home",
        backoff_s=0.01,
        **client_options,
    )
    return Notifier(redis_client, OPS, events=events)


def run(pager: Notifier, evaluations) -> None:
    for seconds, samples in evaluations:
        pager.evaluate(now=T0 + seconds, samples=samples)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_condition_triggers_once_and_resolves(redis_client, receiver, scenario):
    dedup, starts, clears = SCENARIOS[scenario]
    pager = notifier(redis_client, receiver)
    run(pager, starts[:-1])
    assert receiver.delivered() == []
    run(pager, starts[-1:])
    assert receiver.delivered() == [("trigger", dedup)]
    trigger = receiver.events[-1]
    assert trigger["routing_key"] == "test-routing-key"
    assert trigger["payload"]["severity"] in ("critical", "warning")
    assert trigger["payload"]["source"] == "alfred-home"
    assert trigger["payload"]["custom_details"]["runbook"].startswith("docs/runbook.md#")
    # Still true at the next evaluation: no second trigger.
    run(pager, starts[-1:])
    assert receiver.delivered() == [("trigger", dedup)]
    run(pager, clears)
    assert receiver.delivered() == [("trigger", dedup), ("resolve", dedup)]
    assert redis_client.hlen(STATE_KEY) == 0


def test_a_condition_that_holds_for_an_hour_pages_once(redis_client, receiver):
    pager = notifier(redis_client, receiver)
    for t in range(0, 3600, 30):
        pager.evaluate(now=T0 + t, samples=gauge("alfred_phone_quality_rating", 1, tenant="biz"))
    assert receiver.delivered() == [("trigger", "alfred:biz:quality")]
    assert "rating 1" in receiver.events[0]["payload"]["summary"]


def test_429_and_5xx_are_retried_with_back_off(redis_client, receiver):
    receiver.answers.extend([429, 503, 500])
    pager = notifier(redis_client, receiver)
    pager.evaluate(now=T0, samples=gauge("alfred_phone_quality_rating", 2, tenant="home"))
    assert [e["_answered"] for e in receiver.events] == [429, 503, 500, 202]
    assert receiver.delivered() == [("trigger", "alfred:home:quality")]


def test_an_event_still_undelivered_after_the_retries_is_sent_at_the_next_evaluation(
    redis_client, receiver
):
    receiver.answers.extend([503] * 3)
    pager = notifier(redis_client, receiver, retries=2)
    samples = gauge("alfred_phone_quality_rating", 2, tenant="home")
    pager.evaluate(now=T0, samples=samples)
    assert receiver.delivered() == [] and len(receiver.events) == 3
    pager.evaluate(now=T0 + 30, samples=samples)
    assert receiver.delivered() == [("trigger", "alfred:home:quality")]


def test_400_is_logged_and_not_retried(redis_client, receiver, caplog):
    receiver.answers.append(400)
    pager = notifier(redis_client, receiver)
    samples = gauge("alfred_phone_quality_rating", 2, tenant="home")
    pager.evaluate(now=T0, samples=samples)
    pager.evaluate(now=T0 + 30, samples=samples)
    assert [e["_answered"] for e in receiver.events] == [400]
    assert any(r.getMessage() == "alert.rejected" and r.status == 400 for r in caplog.records)
    # Cleared: the resolve still goes out.
    pager.evaluate(now=T0 + 60, samples=gauge("alfred_phone_quality_rating", 3, tenant="home"))
    assert receiver.delivered() == [("resolve", "alfred:home:quality")]


def test_without_a_routing_key_nothing_is_sent_and_it_says_why(redis_client, caplog):
    pager = Notifier(redis_client, OPS)
    assert pager.events is None
    for t in (0, 30, 60):
        firing = pager.evaluate(
            now=T0 + t, samples=gauge("alfred_phone_quality_rating", 2, tenant="home")
        )
    assert list(firing) == ["alfred:home:quality"]
    said = [r for r in caplog.records if r.getMessage() == "alert.no_routing_key"]
    assert len(said) == 1  # once per incident, not at every evaluation
    pager.evaluate(now=T0 + 90, samples=gauge("alfred_phone_quality_rating", 3, tenant="home"))
    assert redis_client.hlen(STATE_KEY) == 0
