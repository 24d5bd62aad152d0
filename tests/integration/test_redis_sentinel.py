"""REDIS_URL=sentinel://…: redis-py clients, Celery's transport and WAIT, on real sentinels.

A private set-up (tests/resilience/sentinels.py): a master, a replica, three sentinels, on
free ports. `SENTINEL FAILOVER` swaps master and replica without losing a write.
"""

from __future__ import annotations

import time

import pytest
import redis
import requests
from celery import Celery

from alfred.ingest.receive import READY_KEY, accept_delivery, ingest_journal
from alfred.redis_client import (
    MASTER_CHECK_EVERY_S,
    ReplicasBehind,
    get_redis,
    kombu_sentinel,
)
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers
from tests.processes import gunicorn
from tests.resilience.sentinels import MASTER_NAME, SentinelSet

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sentinels(tmp_path):
    setup = SentinelSet(tmp_path / "sentinel", replicas=1).start()
    yield setup
    setup.stop()
    get_redis.cache_clear()


def _fail_over(sentinels: SentinelSet) -> int:
    """Fail over by hand; return once the old master has turned replica (writes there before
    that are lost when it resyncs: Sentinel's failover is not coordinated)."""
    old = sentinels.master_port()
    assert old is not None
    redis.Redis(port=sentinels.sentinel_ports[0]).sentinel_failover(MASTER_NAME)
    new = sentinels.wait_for_new_master(old)
    sentinels._wait(
        lambda: (
            redis.Redis(port=old).info("replication")["role"] == "slave"
            and redis.Redis(port=old).info("replication").get("master_link_status") == "up"
        ),
        20,
        "the old master did not become a replica",
    )
    return new


def _eventually(call, limit_s: float = 20):
    """Call until it stops raising a Redis error (a failover under way), then return it."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return call()
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_redis_client_follows_the_master_through_a_failover(sentinels):
    client = get_redis(sentinels.url)
    client.set("before", "1")
    first = sentinels.master_port()
    assert redis.Redis(port=first).get("before") == b"1"
    new = _fail_over(sentinels)
    # The same client: its connections to the demoted master are dropped (READONLY), the next
    # ones go where the sentinels now point.
    _eventually(lambda: client.set("after", "1"))
    assert redis.Redis(port=new).get("after") == b"1"
    assert redis.Redis(port=new).get("before") == b"1"


def test_writes_follow_the_sentinels_before_the_old_master_turns_replica(sentinels):
    client = get_redis(sentinels.url)
    client.set("warm", "1")  # a pooled connection to the master
    old = sentinels.master_port()
    assert old is not None
    redis.Redis(port=sentinels.sentinel_ports[0]).sentinel_failover(MASTER_NAME)
    new = sentinels.wait_for_new_master(old)
    time.sleep(MASTER_CHECK_EVERY_S + 0.1)
    # Sentinel demotes the old master seconds later; until then it would take this write,
    # and drop it when it resyncs (CheckedSentinelPool).
    client.set("moved", "1")
    assert redis.Redis(port=new).get("moved") == b"1"


def test_celery_publishes_and_consumes_through_the_sentinels(sentinels):
    broker_url, options = kombu_sentinel(sentinels.url)
    app = Celery("sentinel-test", set_as_current=False)
    app.conf.broker_url = broker_url
    app.conf.broker_transport = "alfred.broker:SentinelTransport"
    app.conf.broker_transport_options = options
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue("sentinel-probe")
        queue.put({"n": 1})
        assert redis.Redis(port=sentinels.master_port()).llen("sentinel-probe") == 1
        new = _fail_over(sentinels)
        _eventually(lambda: queue.put({"n": 2}))
        assert redis.Redis(port=new).llen("sentinel-probe") == 2
        got = [queue.get(timeout=5) for _ in range(2)]
        assert sorted(m.payload["n"] for m in got) == [1, 2]
        for message in got:
            message.ack()
        queue.close()


def test_wait_makes_the_acknowledgement_wait_for_a_replica(sentinels):
    client = get_redis(sentinels.url)
    journal = ingest_journal(client)
    published: list[str] = []
    delivery = accept_delivery(
        b"{}", received_at=time.time(), journal=journal, publish=published.append,
        wait_replicas=1, wait_timeout_ms=1000,
    )  # fmt: skip
    replica = sentinels.replicas[0]
    assert redis.Redis(port=replica.port).hexists(journal.records_key, delivery)
    replica.pause()
    try:
        with pytest.raises(ReplicasBehind, match="0 of 1 replica"):
            accept_delivery(
                b"{}", received_at=time.time(), journal=journal, publish=published.append,
                wait_replicas=1, wait_timeout_ms=50,
            )  # fmt: skip
    finally:
        replica.resume()
    # The write stands on the master and its task was published: the retry Meta sends after
    # the 503 is a duplicate, not the only copy.
    assert journal.size() == 2
    assert client.llen(READY_KEY) == 2
    assert published == [delivery]  # the second found the first's task under way


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_webhook_answers_503_when_no_replica_confirms(sentinels, env):
    # The web as production runs it (gunicorn.conf.py), its REDIS_URL the sentinels'.
    extra = {
        "REDIS_URL": sentinels.url,
        "REDIS_WAIT_REPLICAS": "1",
        "REDIS_WAIT_TIMEOUT_MS": "100",
        "METRICS_PORT": "0",
    }
    body = body_of(fixture("text"))
    headers = signed_headers(body, APP_SECRET)
    with gunicorn(extra) as url:
        assert requests.post(f"{url}/webhook", data=body, headers=headers).status_code == 200
        sentinels.replicas[0].pause()
        try:
            answer = requests.post(f"{url}/webhook", data=body, headers=headers, timeout=10)
        finally:
            sentinels.replicas[0].resume()
        assert answer.status_code == 503
        assert answer.json()["error"] == "replicas_behind"
        assert requests.post(f"{url}/webhook", data=body, headers=headers).status_code == 200
    # Every delivery answered, 200 or 503, was journaled on the master and replicated.
    master = redis.Redis(port=sentinels.master_port())
    assert master.zcard("alfred:journal:ingest:due") == 3
