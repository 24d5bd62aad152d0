"""The outbox bridge on real Redis: ack after enqueue, rejects, a killed consumer, restarts."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from alfred.config import REPO_ROOT
from alfred.outbox.bridge import OutboxBridge, message_from_entry
from tests.conftest import SHARED_REDIS_URL as REDIS_URL

pytestmark = pytest.mark.integration

MESSAGE = {"tenant_id": "home", "to": "+14155551234", "type": "text", "text": {"body": "héllo 👋"}}


@pytest.fixture
def client(shared_redis):
    """Give a client of the shared Redis database."""
    return shared_redis


@pytest.fixture
def outbox(client):
    """Give a (stream, group) of this test only; the stream and its group go afterwards."""
    name = f"test-outbox-{uuid.uuid4().hex}"
    yield name, f"{name}-group"
    client.delete(name, f"{name}-delivered")


def add(client: redis.Redis, stream: str, message: dict | None = None, **fields) -> str:
    """Append an entry whose payload is the message (or with the raw fields given)."""
    entry = fields or {"payload": json.dumps({**MESSAGE, **(message or {})})}
    return client.xadd(stream, entry).decode()


def pending(client: redis.Redis, stream: str, group: str) -> int:
    """Count the group's entries read but not acked."""
    return client.xpending(stream, group)["pending"]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll until the predicate holds, failing the test at the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {predicate}")
        time.sleep(interval)


def test_message_from_entry_parses_and_keys_the_payload():
    keyed = message_from_entry("1-0", {b"payload": json.dumps({"idempotency_key": "k"}).encode()})
    assert keyed["idempotency_key"] == "k"
    unkeyed = message_from_entry("1-0", {"payload": json.dumps(MESSAGE)})
    assert unkeyed == {**MESSAGE, "idempotency_key": "outbox:1-0"}
    with pytest.raises(ValueError, match="no 'payload'"):
        message_from_entry("1-0", {"body": "{}"})


def test_each_entry_is_enqueued_once_and_acked_only_after(client, outbox):
    stream, group = outbox
    ids = [add(client, stream, {"text": {"body": f"n{i}"}}) for i in range(5)]
    seen: list[tuple[dict, int]] = []

    def enqueue(message: dict) -> None:
        seen.append((message, pending(client, stream, group)))

    bridge = OutboxBridge(
        client, enqueue=enqueue, reject=pytest.fail, consumer="c1", stream=stream, group=group
    )
    assert bridge.run_once() == 5
    assert [m["idempotency_key"] for m, _ in seen] == [f"outbox:{i}" for i in ids]
    assert [m["text"]["body"] for m, _ in seen] == [f"n{i}" for i in range(5)]
    # While each was being enqueued it was still pending, the later ones too: acks come after.
    assert [p for _, p in seen] == [5, 4, 3, 2, 1]
    assert pending(client, stream, group) == 0
    assert bridge.run_once() == 0 and len(seen) == 5


def test_invalid_entries_are_rejected_with_reasons_and_acked(client, outbox):
    stream, group = outbox
    bad = {
        add(client, stream, body="{}"): "no 'payload'",
        add(client, stream, payload="{nope"): "not JSON",
        add(client, stream, payload="[1, 2]"): "JSON list, not an object",
        add(client, stream, payload=b"\xff\xfe"): "not UTF-8",
        add(client, stream, payload='{"idempotency_key": 7}'): "must be a string",
    }
    good = add(client, stream)
    enqueued, rejected = [], {}
    bridge = OutboxBridge(
        client,
        enqueue=enqueued.append,
        reject=lambda entry, fields, reason: rejected.setdefault(entry, (fields, reason)),
        consumer="c1",
        stream=stream,
        group=group,
    )
    assert bridge.run_once() == 6
    assert [m["idempotency_key"] for m in enqueued] == [f"outbox:{good}"]
    assert set(rejected) == set(bad)
    for entry, expected in bad.items():
        assert expected in rejected[entry][1]
    assert rejected[next(iter(bad))][0] == {b"body": b"{}"}  # the raw fields, for the record
    assert pending(client, stream, group) == 0


def test_an_enqueue_failure_leaves_the_entry_pending_for_a_later_run(client, outbox):
    stream, group = outbox
    first, second = add(client, stream), add(client, stream)
    broker_down = {f"outbox:{first}"}
    enqueued = []

    def enqueue(message: dict) -> None:
        if message["idempotency_key"] in broker_down:
            broker_down.clear()
            raise OSError("broker unavailable")
        enqueued.append(message["idempotency_key"])

    bridge = OutboxBridge(
        client,
        enqueue=enqueue,
        reject=pytest.fail,
        consumer="c1",
        stream=stream,
        group=group,
        claim_idle_ms=200,
    )
    assert bridge.run_once() == 1
    assert bridge.enqueue_failures == 1
    assert enqueued == [f"outbox:{second}"]
    assert pending(client, stream, group) == 1
    time.sleep(0.25)
    assert bridge.run_once() == 1  # taken back by XAUTOCLAIM once idle
    assert enqueued == [f"outbox:{second}", f"outbox:{first}"]
    assert pending(client, stream, group) == 0


def test_a_restarted_consumer_reads_its_own_pending_entries_first(client, outbox):
    stream, group = outbox
    entry = add(client, stream)
    crashed = OutboxBridge(
        client,
        enqueue=lambda m: None,
        reject=pytest.fail,
        consumer="c1",
        stream=stream,
        group=group,
    )
    crashed.ensure_group()
    client.xreadgroup(group, "c1", {stream: ">"}, count=10)  # read, then "crashed" before enqueue
    enqueued = []
    restarted = OutboxBridge(
        client,
        enqueue=enqueued.append,
        reject=pytest.fail,
        consumer="c1",
        stream=stream,
        group=group,
    )
    assert restarted.run_once() == 1
    assert [m["idempotency_key"] for m in enqueued] == [f"outbox:{entry}"]
    assert pending(client, stream, group) == 0


VICTIM = """
import json, sys, threading, time
import redis
from alfred.outbox.bridge import OutboxBridge

url, stream, group, delivered = sys.argv[1:5]
client = redis.Redis.from_url(url)

def enqueue(message):
    client.rpush(delivered, json.dumps({"by": "victim", "message": message}))
    time.sleep(0.15)  # slow, so the kill lands mid-batch

OutboxBridge(client, enqueue=enqueue, reject=lambda *a: None, consumer="victim",
             stream=stream, group=group, batch=10, block_ms=100,
             claim_idle_ms=300).run_forever(threading.Event())
"""


def test_a_killed_consumers_entries_are_claimed_and_all_delivered(client, outbox):
    stream, group = outbox
    delivered = f"{stream}-delivered"
    ids = [add(client, stream, {"text": {"body": f"n{i}"}}) for i in range(15)]
    victim = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(VICTIM), REDIS_URL, stream, group, delivered],
        cwd=REPO_ROOT,
    )
    try:
        # The victim is a fresh interpreter: on a loaded machine its imports alone take seconds.
        wait_for(lambda: client.llen(delivered) >= 3, timeout=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    orphaned = pending(client, stream, group)
    assert orphaned >= 8  # the rest of its batch of 10, read but never acked

    def enqueue(message: dict) -> None:
        client.rpush(delivered, json.dumps({"by": "rescuer", "message": message}))

    rescuer = OutboxBridge(
        client,
        enqueue=enqueue,
        reject=pytest.fail,
        consumer="rescuer",
        stream=stream,
        group=group,
        block_ms=50,
        claim_idle_ms=300,
    )
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(r) for r in client.lrange(delivered, 0, -1)]
        done = {r["message"]["idempotency_key"] for r in records} == {f"outbox:{i}" for i in ids}
        if done and not pending(client, stream, group):
            break
        assert time.monotonic() < deadline, "the rescuer did not finish"
        rescuer.run_once()
    keys = Counter(r["message"]["idempotency_key"] for r in records)
    assert set(keys) == {f"outbox:{i}" for i in ids}  # every entry at least once
    by_key: dict[str, list[dict]] = {}
    for r in records:
        by_key.setdefault(r["message"]["idempotency_key"], []).append(r["message"])
    for copies in by_key.values():  # a duplicate is the same message under the same key
        assert all(c == copies[0] for c in copies)
    assert any(r["by"] == "rescuer" for r in records)
    assert pending(client, stream, group) == 0


def _sample(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test only, with an append-only file so data survives a kill."""

    def __init__(self):
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alfred-redis-"))
        self.process: subprocess.Popen | None = None

    def start(self, *, fresh: bool = False) -> None:
        """Start (or restart) the server on the same port, optionally with its data wiped."""
        if fresh:
            shutil.rmtree(self.dir)
            self.dir.mkdir()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _answers(probe), timeout=5)
        probe.close()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis():
    """Give a private redis-server, stopped and removed afterwards whatever happens."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.dir, ignore_errors=True)


def test_the_bridge_rides_out_redis_restarts(private_redis):
    # No retries inside redis-py: the bridge's own recovery is what is under test.
    client = redis.Redis(
        port=private_redis.port,
        socket_connect_timeout=0.5,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    enqueued: list[str] = []
    bridge = OutboxBridge(
        client,
        enqueue=lambda m: enqueued.append(m["idempotency_key"]),
        reject=pytest.fail,
        consumer="c1",
        stream="outbox",
        group="outbound",
        block_ms=100,
        max_backoff_s=0.2,
    )
    reconnects = {
        reason: _sample("alfred_outbox_reconnects_total", reason)
        for reason in ("connection", "nogroup")
    }
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        wanted = {f"outbox:{add(client, 'outbox')}" for _ in range(5)}
        wait_for(lambda: wanted <= set(enqueued) and not pending(client, "outbox", "outbound"))
        # A crash with the AOF kept: the stream, the group and its acks survive.
        private_redis.kill()
        time.sleep(0.3)
        private_redis.start()
        wanted |= {f"outbox:{add(client, 'outbox')}" for _ in range(5)}
        wait_for(lambda: wanted <= set(enqueued) and not pending(client, "outbox", "outbound"))
        assert Counter(enqueued).most_common(1)[0][1] == 1  # and nothing was sent twice
        # A crash that loses everything: the group is gone (NOGROUP) and is recreated.
        private_redis.kill()
        private_redis.start(fresh=True)
        wanted |= {f"outbox:{add(client, 'outbox')}" for _ in range(3)}
        wait_for(lambda: wanted <= set(enqueued))
        assert thread.is_alive()
        assert pending(client, "outbox", "outbound") == 0
        assert _sample("alfred_outbox_reconnects_total", "connection") > reconnects["connection"]
        assert _sample("alfred_outbox_reconnects_total", "nogroup") > reconnects["nogroup"]
    finally:
        stop.set()
        thread.join(5)
        client.close()
    assert not thread.is_alive()
