"""Redis Sentinel: the master lost mid-load; the stack follows the new master on its own.

A private set-up (tests/resilience/sentinels.py): a master, two replicas, three sentinels
(quorum 2, down after 1 s). The web (gunicorn.conf.py) and a worker with --outbox (the
Procfile's lines) have `REDIS_URL=sentinel://…`; Meta's side retries as Meta does; Alfred's
side sends by `send_message.delay` and «alfred-outbox». The master is SIGKILLed, or handed
over by `SENTINEL FAILOVER` (not coordinated: the old master takes writes until it is told
to turn replica). Each without and with `REDIS_WAIT_REPLICAS=1`. Counted: the deliveries
answered 200 that never reached the stream (what replication lost), the sends lost or
doubled, the webhook's answers during the failover, and its latency before it.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import pytest
import redis

from alfred.ingest.receive import ingest_journal
from alfred.outbound.pending import outbound_journal
from alfred.redis_client import get_redis
from alfred.simulator.testing import running_simulator
from alfred.streams import OUTBOUND_GROUP, OUTBOX_STREAM
from tests.conftest import _simulator_config
from tests.integration.test_send_pipeline import open_window
from tests.resilience.harness import Figures, MetaLikeSender, PeakRss, message_ids, sent_keys
from tests.resilience.sentinels import MASTER_NAME, SentinelSet
from tests.resilience.stack import Machines

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
DELIVERIES = 300
SENDS = 100
USERS = [f"+4477007{n:05d}" for n in range(SENDS)]


def _wait(predicate, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except redis.RedisError:
            pass  # the failover is still under way
        time.sleep(0.2)
    return False


def _idle(client: redis.Redis) -> bool:
    """Nothing journaled, nothing unread or pending in the outbox group."""
    if ingest_journal(client).size() or outbound_journal(client).size():
        return False
    groups = {g["name"].decode(): g for g in client.xinfo_groups(OUTBOX_STREAM)}
    group = groups.get(OUTBOUND_GROUP)
    return group is not None and group["pending"] == 0 and not group.get("lag")


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


@pytest.mark.parametrize("fault", ["sigkill", "sentinel-failover"])
@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_master_lost_mid_load_the_stack_follows_the_new_master(env, tmp_path, wait_replicas, fault):
    sentinels = SentinelSet(tmp_path / "sentinel", replicas=2).start()
    get_redis.cache_clear()
    client = get_redis(sentinels.url)
    tag = f"{fault}{wait_replicas}"
    base = {
        **env,
        "REDIS_URL": sentinels.url,
        "REDIS_WAIT_REPLICAS": str(wait_replicas),
        "REDIS_WAIT_TIMEOUT_MS": "100",
        # A retry Meta sends after the failover keeps its first timestamp: late, not stale.
        "WEBHOOK_STALE_POLICY": "deliver",
    }
    open_window(env["DATABASE_URL"], "home", *[u.lstrip("+") for u in USERS])
    machines = Machines(base, tmp_path / "logs")
    figures = Figures(
        f"sentinel[{fault}, wait_replicas={wait_replicas}]",
        faults=(
            "master SIGKILL, sentinels promote a replica"
            if fault == "sigkill"
            else "SENTINEL FAILOVER (the old master lives on, then turns replica)"
        ),
    )
    try:
        web = machines.web("web")
        config = _simulator_config(f"{web}/webhook", status_delay_s=0.01, enforce_window=False)
        with running_simulator(config) as simulator:
            machines.worker("worker", {"GRAPH_API_URL": simulator.url})
            # As in production: beat's sweeper re-drives what a failover dropped in flight
            # (a task published to the old master, gone when it resynced).
            machines.beat("beat")
            sender = MetaLikeSender(f"{web}/webhook")
            with PeakRss({"web": machines.pid("web"), "worker": machines.pid("worker")}) as rss:
                pool = sender.run(DELIVERIES, tag, threads=4, rate_per_s=30)
                orchestrator = machines.orchestrator("orchestrator", tag, SENDS, 10, USERS)
                assert _wait(lambda: len(sender.accepted) >= DELIVERIES // 3, 60)
                old_port = sentinels.master_port()
                assert old_port is not None
                if fault == "sigkill":
                    sentinels.server_on(old_port).kill()
                else:
                    redis.Redis(port=sentinels.sentinel_ports[0]).sentinel_failover(MASTER_NAME)
                killed = time.monotonic()
                sentinels.wait_for_new_master(old_port)
                promoted = time.monotonic()
                orchestrator.wait(120)
                for thread in pool:
                    thread.join(150)

                complete = _wait(
                    lambda: (
                        set(message_ids(client, tag)) >= sender.accepted
                        and len(sent_keys(simulator, tag, 10 * SENDS)) >= SENDS
                    ),
                    60,
                )
                # What never arrives is lost: wait for the stack to go idle instead.
                idle = complete or _wait(lambda: _idle(client), 90)
                ids = message_ids(client, tag)
                keys = sent_keys(simulator, tag, 10 * SENDS)
            figures.peak_rss_mb = rss.peak
    finally:
        machines.stop_all()
        sentinels.stop()
        get_redis.cache_clear()

    before = [a.seconds for a in sender.answers if a.status == 200 and a.at < killed - 0.5]
    after = [a for a in sender.answers if a.at >= killed]
    back = [a.at + a.seconds for a in after if a.status == 200]
    statuses = Counter(str(a.status) for a in after if a.status != 200)
    orchestrated = machines.log_lines("orchestrator")[-1]
    inbound_lost = len(sender.accepted - set(ids))
    sends_lost = SENDS - len(keys)
    figures.messages_in = len(sender.accepted) + SENDS
    figures.messages_out = len(set(ids)) + len(keys)
    figures.lost = inbound_lost + sends_lost
    figures.duplicated = (len(ids) - len(set(ids))) + sum(n - 1 for n in keys.values())
    figures.recovery_s = (min(back) - killed) if back else None
    figures.notes = (
        f"inbound_lost={inbound_lost} sends_lost={sends_lost}"
        f" promoted_after={promoted - killed:.1f}s refused_after_kill={dict(statuses)}"
        f" orchestrator_retries={orchestrated.get('retried')}"
        f" webhook_ms_before_kill[p50={1000 * _percentile(before, 50):.1f}"
        f" p95={1000 * _percentile(before, 95):.1f} n={len(before)}]"
    )
    figures.report()
    assert idle, figures.line()
    assert sender.abandoned == set(), figures.line()
    assert back, "the webhook never answered 200 again: " + figures.line()
    # Meta is told to retry (503) or gets no answer in time, never a 500.
    assert set(statuses) <= {"503", "None"}, figures.line()
    if wait_replicas and fault == "sigkill":
        # Every 200 was on a replica before it was given: the promoted one holds it.
        assert inbound_lost == 0, figures.line()
    # A `SENTINEL FAILOVER` loses what reached the old master between the promotion and the
    # moment the clients follow (its replicas are reconfigured away, its WAIT acks included):
    # measured and written up in docs/reliability.md, not asserted away.
