"""SIGTERM mid-load to web, the worker and the outbox bridge: nothing lost, nothing duplicated.

Real processes: gunicorn with the Procfile's settings and hooks, `celery worker`, and
`python -m alfred outbox`, each stopped with SIGTERM (what Fly's kill_signal sends) while
work is in flight, then started again, as a deploy does. Deliveries web could not answer 200
are delivered again, as Meta retries them.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from alfred.outbound.pending import outbound_journal
from alfred.streams import OUTBOX_STREAM
from tests.conftest import APP_SECRET, free_port
from tests.helpers import body_of, fixture, signed_headers
from tests.integration.test_ingest_pipeline import stream_entries
from tests.ops.stack import Stack, wait_until

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    # Processes started, stopped mid-load and started again on a shared, loaded machine.
    pytest.mark.timeout(420),
]


@pytest.fixture
def stack(env, tmp_path, simulator):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process_env = {
        **os.environ,
        "GRAPH_API_URL": simulator.url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_PORT": str(free_port()),
        "ALERT_NOTIFIER": "off",
    }
    running = Stack(process_env, tmp_path)
    yield running
    running.stop_all()


def gunicorn(port: int) -> list[str]:
    return [
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "wsgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "--preload",
    ]


def delivery(i: int) -> bytes:
    payload = fixture("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = f"wamid.sigterm-{i:05d}"
    message["text"]["body"] = f"message {i}"
    return body_of(payload)


def test_web_finishes_in_flight_requests_on_sigterm(stack, redis_client):
    total = 400
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    stack.start("web", *gunicorn(port))
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, what="gunicorn up"
    )
    answered: dict[int, int] = {}
    refused: list[int] = []
    halfway = threading.Event()

    def post(i: int) -> None:
        if i == total // 4:
            halfway.set()
        body = delivery(i)
        try:
            answer = requests.post(
                url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30
            )
            answered[i] = answer.status_code
        except requests.ConnectionError:
            refused.append(i)  # never reached a worker of ours: Meta retries it

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, i) for i in range(total)]
        halfway.wait(30)
        stack.signal("web")
        for future in futures:
            future.result()
    assert stack.wait("web") == 0, stack.log("web")
    # Every request gunicorn took was answered whole, and 200: none cut off mid-flight.
    assert set(answered.values()) == {200}, Counter(answered.values())
    assert answered, "SIGTERM landed before any request"
    assert refused, "SIGTERM landed after the load: it must land mid-load"
    # The deploy's new web takes Meta's retries; a worker drains everything.
    stack.start("web2", *gunicorn(port))
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok,
        what="gunicorn up again",
    )
    for i in refused:
        body = delivery(i)
        assert (
            requests.post(
                url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30
            ).status_code
            == 200
        )
    stack.start("worker")
    wait_until(lambda: redis_client.xlen("alfred-ingest") >= total, what="all ingested")
    ids = Counter(e["envelope"]["id"] for e in stream_entries(redis_client))
    assert len(ids) == total and max(ids.values()) == 1
    print(f"\nweb: {len(answered)} answered before/while stopping, {len(refused)} retried")


def outcomes(database_url: str) -> Counter:
    """Count the outbound rows by status and reason, to say what became of each message."""
    from sqlalchemy import select

    from alfred.db import session_scope
    from alfred.models import Message

    with session_scope(database_url) as session:
        rows = session.execute(select(Message.status, Message.error_reason, Message.error_code))
        return Counter(tuple(row) for row in rows)


def test_worker_and_outbox_shut_down_warm_on_sigterm(env, stack, simulator, redis_client):
    total = 600
    stack.start("worker")
    stack.start("outbox")
    for i in range(total):
        message = {
            "tenant_id": "home" if i % 2 else "biz",
            "to": f"+4477002{i:05d}",
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        }
        redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(message)})

    def accepted() -> int:
        return simulator.state.stats()["sends"]["accepted"]

    try:
        wait_until(lambda: accepted() >= 20, timeout=120, interval=0.01, what="sends under way")
    except AssertionError:
        raise AssertionError(
            f"no sends: {simulator.state.stats()['sends']}; queue {redis_client.llen('outbound')}"
            f"; stream {redis_client.xlen(OUTBOX_STREAM)}\nWORKER {stack.log('worker')[-2500:]}"
            f"\nOUTBOX {stack.log('outbox')[-1500:]}"
        ) from None
    stack.signal("outbox")
    stack.signal("worker")
    assert stack.wait("outbox") == 0, stack.log("outbox")
    assert stack.wait("worker") == 0, stack.log("worker")
    at_stop = accepted()
    assert at_stop < total, "SIGTERM must land mid-load"
    # Started again, as a deploy does: the rest goes out, none twice.
    stack.start("worker2", *stack_command("worker"))
    stack.start("outbox2", *stack_command("outbox"))
    try:
        wait_until(lambda: accepted() >= total, timeout=120, what=f"all {total} sent")
    except AssertionError:
        raise AssertionError(
            f"{accepted()} of {total} sent; outbox pending "
            f"{redis_client.xpending(OUTBOX_STREAM, 'alfred-outbound')}, queue "
            f"{redis_client.llen('outbound')}, journal {outbound_journal(redis_client).size()}; "
            f"{simulator.state.stats()['sends']}; outcomes {outcomes(env['DATABASE_URL'])}"
            f"\nWORKER2 {stack.log('worker2')[-2500:]}\nOUTBOX2 {stack.log('outbox2')[-1500:]}"
        ) from None
    stats = simulator.state.stats()
    assert stats["duplicates"]["count"] == 0, stats["duplicates"]
    assert stats["sends"]["accepted"] == total
    assert redis_client.xpending(OUTBOX_STREAM, "alfred-outbound")["pending"] == 0
    print(f"\nworker and outbox: {at_stop} sent before SIGTERM, all {total} once after restart")


def stack_command(name: str) -> list[str]:
    from tests.ops.stack import COMMANDS

    return COMMANDS[name]
