"""The metrics port shows every process's values, exact, while a real worker and outbox run.

A `celery worker` and the outbox bridge (`python -m alfred outbox`) run as subprocesses
sharing one PROMETHEUS_MULTIPROC_DIR; one of them serves METRICS_PORT. Messages go through
«alfred-outbox» to the simulator; the scrape must count each exactly once.
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from alfred.streams import OUTBOX_STREAM
from tests.conftest import free_port
from tests.ops.stack import Stack, scrape, value, wait_until

# What is counted does not depend on the database: SQLite only, to spare the shared cores.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def template(tenant: str, i: int) -> dict:
    return {
        "tenant_id": tenant,
        "to": f"+4477001{i:05d}",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }


@pytest.fixture
def stack(env, simulator, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    process_env = {
        **os.environ,
        "GRAPH_API_URL": simulator.url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_PORT": str(port),
        "ALERT_NOTIFIER": "off",
    }
    running = Stack(process_env, tmp_path)
    running.port = port
    yield running
    running.stop_all()


def test_the_port_sums_every_process_exactly(stack, simulator, redis_client, settings, web):
    stack.start("worker")
    stack.start("outbox")
    for i in range(12):
        redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(template("home", i))})
    for i in range(8):
        redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(template("biz", i))})
    redis_client.xadd(OUTBOX_STREAM, {"payload": "{not json"})
    redis_client.xadd(OUTBOX_STREAM, {"nopayload": "x"})

    wait_until(lambda: simulator.state.stats()["sends"]["accepted"] == 20, what="20 sends")

    def settled():
        samples = scrape(stack.port)
        return samples if value(samples, "alfred_sends_total", outcome="sent") == 20 else None

    samples = wait_until(settled, what="20 sends counted on the metrics port")
    # Counted by the worker process.
    assert value(samples, "alfred_sends_total", tenant="home", outcome="sent") == 12
    assert value(samples, "alfred_sends_total", tenant="biz", outcome="sent") == 8
    assert value(samples, "alfred_send_attempts_total", result="ok") == 20
    # Counted by the outbox process.
    assert value(samples, "alfred_outbox_entries_total", outcome="enqueued") == 20
    assert value(samples, "alfred_outbox_entries_total", outcome="rejected") == 2
    # Read from Redis at scrape time.
    assert value(samples, "alfred_stream_length", stream=OUTBOX_STREAM) == 22
    assert value(samples, "alfred_outbox_pending") == 0
    assert value(samples, "alfred_redis_up") == 1
    # Every process says it is alive.
    for process in ("worker", "outbox"):
        assert value(samples, "alfred_process_heartbeat_timestamp_seconds", process=process)
        live = requests.get(f"http://127.0.0.1:{stack.port}/live/{process}", timeout=5)
        assert live.status_code == 200, live.text
    assert requests.get(f"http://127.0.0.1:{stack.port}/live/beat", timeout=5).status_code == 503
    # And again: nothing counted twice by a second scrape or a late increment.
    assert value(scrape(stack.port), "alfred_sends_total", outcome="sent") == 20
    # The public port has no /metrics.
    assert web.get("/metrics").status_code == 404


def test_when_the_process_serving_the_port_stops_another_takes_over(stack, simulator, redis_client):
    stack.start("worker")
    wait_until(lambda: scrape(stack.port), what="the worker's metrics port")
    stack.start("outbox", ALERT_HEARTBEAT_STALE_S="2")
    for i in range(5):
        redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(template("home", i))})
    wait_until(
        lambda: value(scrape(stack.port), "alfred_sends_total", outcome="sent") == 5,
        what="5 sends counted",
    )
    stack.signal("worker")  # SIGTERM: the worker held the port (it started first)
    assert stack.wait("worker") == 0
    # The outbox bridge binds the port within a few seconds; the worker's counts stay.
    samples = wait_until(lambda: scrape(stack.port), timeout=30, what="the port taken over")
    assert value(samples, "alfred_sends_total", outcome="sent") == 5
    assert value(samples, "alfred_outbox_entries_total", outcome="enqueued") == 5
    wait_until(
        lambda: (
            requests.get(f"http://127.0.0.1:{stack.port}/live/worker", timeout=5).status_code == 503
        ),
        timeout=30,
        what="the stopped worker reported silent",
    )
