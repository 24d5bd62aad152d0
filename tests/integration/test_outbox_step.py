"""`celery worker --outbox`: the outbox bridge runs on a thread of a real worker subprocess.

Both ways of starting the worker: the Procfile's launcher (`python -m alfred.worker_app`,
which leaves out the `celery` command's plugins) and `celery -A alfred.celery_app worker`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from sqlalchemy import select

from alfred.config import REPO_ROOT
from alfred.db import session_scope
from alfred.models import Message
from alfred.streams import OUTBOUND_GROUP, OUTBOX_STREAM
from tests.integration.test_ingest_pipeline import wait_for

LAUNCHERS = {
    "worker_app": ["-m", "alfred.worker_app"],
    "celery": ["-m", "celery", "-A", "alfred.celery_app", "worker"],
}


def start_worker(*options: str, launcher: str = "worker_app") -> subprocess.Popen:
    """Start the Procfile's kind of worker (threads) with `options`, in its own group."""
    return subprocess.Popen(
        [sys.executable, *LAUNCHERS[launcher], "-P", "threads"]
        + ["-c", "2", "-Q", "ingest,outbound,alfred", "--without-gossip", "--without-mingle"]
        + ["-l", "WARNING", *options],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen) -> int:
    """SIGTERM (warm shutdown) and return the exit code; SIGKILL if it lingers."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        return worker.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)
        raise


def bridge_consumers(client, pid: int) -> list[dict]:
    """Return the outbox group's consumers named after `pid` (the bridge's hostname-pid)."""
    if not client.exists(OUTBOX_STREAM):
        return []
    name = f"{socket.gethostname()}-{pid}"
    return [
        c
        for c in client.xinfo_consumers(OUTBOX_STREAM, OUTBOUND_GROUP)
        if (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]) == name
    ]


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_worker_with_outbox_reads_the_stream_and_sends_what_it_reads(env, redis_client, launcher):
    worker = start_worker("--outbox", launcher=launcher)
    try:
        wait_for(lambda: bridge_consumers(redis_client, worker.pid), timeout=60)
        # No recipient: the sender records it as invalid with its reason, making no call, so
        # a row in the database says the entry went bridge -> send_message -> the worker.
        message = {"tenant_id": "home", "type": "text", "text": {"body": "hi"}}
        message["idempotency_key"] = "step-test-1"
        redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(message)})

        def recorded():
            with session_scope(env["DATABASE_URL"]) as session:
                return session.scalars(
                    select(Message.status).where(Message.idempotency_key == "step-test-1")
                ).all()

        assert wait_for(recorded, timeout=30) == ["invalid"]
        (consumer,) = bridge_consumers(redis_client, worker.pid)
        assert consumer["pending"] == 0  # acked once enqueued
    finally:
        code = stop(worker)
    assert code == 0  # the bridge's thread stopped with the worker's warm shutdown


def test_a_worker_without_outbox_runs_no_bridge(env, redis_client):
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))

    def ours(cmd: str) -> bool:  # the shared server's other databases are other runs'
        return any(c.get("cmd") == cmd and c.get("db") == db for c in redis_client.client_list())

    worker = start_worker()
    try:
        wait_for(lambda: ours("brpop"), timeout=60)
        assert bridge_consumers(redis_client, worker.pid) == []
        assert not ours("xreadgroup")
    finally:
        stop(worker)
