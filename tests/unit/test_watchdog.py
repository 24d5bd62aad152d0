"""The task watchdog: a task past the bound is logged and counted once, never killed.

Only the clock is faked. The signal test runs a task through Celery's own tracer.
"""

from __future__ import annotations

import logging

from celery import Celery
from prometheus_client import REGISTRY

import alfred.celery_app  # noqa: F401 - connects the watchdog to Celery's task signals
from alfred.operations import watchdog


def overruns(task: str) -> float:
    return REGISTRY.get_sample_value("alfred_task_overruns_total", {"task": task}) or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_task_past_the_bound_is_reported_once_and_forgotten_when_done(caplog):
    clock = Clock()
    dog = watchdog.Watchdog(bound_s=60.0, clock=clock)
    before = overruns("alfred.send_message")
    dog.started("t1", "alfred.send_message")
    dog.started("t2", "alfred.ingest_delivery")
    clock.now += 59.0
    assert dog.check() == []
    clock.now += 2.0  # t1 and t2 at 61 s
    dog.finished("t2")
    with caplog.at_level(logging.WARNING, logger="alfred.operations.watchdog"):
        assert dog.check() == [("t1", "alfred.send_message", 61.0)]
    assert [r.message for r in caplog.records] == ["task.overrun"]
    assert caplog.records[0].task_id == "t1"
    clock.now += 30.0
    assert dog.check() == []  # still running: said once, not at every check
    assert overruns("alfred.send_message") == before + 1
    assert REGISTRY.get_sample_value("alfred_task_oldest_running_seconds") == 91.0
    dog.finished("t1")
    dog.check()
    assert REGISTRY.get_sample_value("alfred_task_oldest_running_seconds") == 0.0


def test_celery_s_task_signals_reach_the_watchdog():
    app = Celery("watchdog-test", set_as_current=False)
    seen = []

    @app.task(name="watchdog.probe")
    def probe():
        seen.append(dict(watchdog._watchdog._running))
        return "ok"

    assert probe.apply().get() == "ok"
    (running,) = seen
    assert [name for name, _since in running.values()] == ["watchdog.probe"]
    assert not watchdog._watchdog._running  # task_postrun forgot it
