"""The in-app notifier with real processes: beat evaluates, a killed process pages, and resolves.

beat and the outbox bridge run as subprocesses sharing a metrics folder; beat's own evaluation
posts to a local HTTP receiver playing PagerDuty. The outbox is SIGKILLed (no clean exit, as
the OOM killer does): its heartbeat goes stale, process_down triggers once; a new outbox
heartbeats again and the incident resolves.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import free_port
from tests.ops.pagerduty_receiver import Receiver
from tests.ops.stack import Stack, wait_until

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.timeout(420),
]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def test_a_killed_process_triggers_once_and_resolves_when_back(env, tmp_path, receiver):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stack = Stack(
        {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "METRICS_PORT": str(free_port()),
            "PAGERDUTY_ROUTING_KEY": "test-routing-key",
            "PAGERDUTY_EVENTS_URL": receiver.url,
            "ALERT_NOTIFIER": "on",
            "ALERT_EVALUATE_EVERY_S": "1",
            "ALERT_HEARTBEAT_STALE_S": "12",  # heartbeats every 5 s
        },
        tmp_path,
    )
    try:
        stack.start(
            "beat",
            "-m",
            "alfred.beat_app",
            "--schedule",
            str(tmp_path / "schedule"),
            "--loglevel",
            "WARNING",
        )
        stack.start("outbox")
        # Both alive a while: nothing is paged.
        wait_until(
            lambda: len(list(metrics_dir.glob("gauge_max_*.db"))) >= 2,
            timeout=150,
            what="both heartbeating",
        )
        time.sleep(14)  # evaluations with both alive, past the stale threshold
        assert receiver.delivered() == []
        stack.signal("outbox", signal.SIGKILL)
        stack.wait("outbox")
        trigger = wait_until(
            lambda: receiver.delivered("trigger"), timeout=60, what="process_down triggered"
        )
        assert trigger == [("trigger", "alfred:all:process_down")]
        event = next(e for e in receiver.events if e["event_action"] == "trigger")
        assert "outbox" in event["payload"]["summary"]
        assert event["payload"]["severity"] == "critical"
        stack.start("outbox2", "-m", "alfred", "outbox")
        wait_until(lambda: receiver.delivered("resolve"), timeout=60, what="resolved")
        assert receiver.delivered() == [
            ("trigger", "alfred:all:process_down"),
            ("resolve", "alfred:all:process_down"),
        ]
    finally:
        stack.stop_all()
