"""Scale-out, as on two machines: two webs, two workers (two outbox bridges), two beats.

All of them share one private redis-server (AOF) and one PostgreSQL database, and run the
Procfile's own lines. Meta's side delivers to both webs in turn; Alfred's side sends half by
`send_message.delay` and half through «alfred-outbox». Counted: each event once in
«alfred-ingest», each message once at the simulator (per idempotency key), the number's rate
at the simulator across both workers, and which beat fired each periodic job.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import replace

import pytest
import redis

from alfred.ingest.receive import ingest_journal
from alfred.outbound.pending import outbound_journal
from alfred.simulator.testing import running_simulator
from tests.conftest import TENANTS, _simulator_config
from tests.integration.test_send_pipeline import open_window
from tests.resilience.harness import (
    Figures,
    MetaLikeSender,
    PeakRss,
    PrivateRedis,
    message_ids,
    sent_keys,
    wait,
)
from tests.resilience.stack import Machines

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
DELIVERIES = 240
SENDS = 160
# Low enough that the two workers together could exceed it many times over: the pacing
# across both is what is measured.
MPS = 10
USERS = [f"+4477008{n:05d}" for n in range(80)]  # two messages each: far inside the pair burst
HOME = TENANTS["home"]["phone_number_id"]


def max_in_window(times: list[float], window_s: float) -> int:
    """The most events in any half-open window [t, t + window_s)."""
    times, best, start = sorted(times), 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def beat_firings(machines: Machines, beats: list[str]) -> dict[str, list[tuple[float, str]]]:
    """Each schedule entry's firings across the beats: (time, beat), oldest first."""
    fired: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for beat in beats:
        for line in machines.log_lines(beat):
            if line.get("event") == "beat.fired":
                fired[line["entry"]].append((line["ts"], beat))
    return {entry: sorted(times) for entry, times in fired.items()}


def test_two_machines_share_one_redis_and_one_database(env, tmp_path):
    from celeryconfig import beat_schedule

    server = PrivateRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url)
    tenants = {**TENANTS, "home": {**TENANTS["home"], "mps": MPS}}
    base = {**env, "REDIS_URL": server.url, "ALFRED_TENANTS": json.dumps(tenants)}
    open_window(env["DATABASE_URL"], "home", *[u.lstrip("+") for u in USERS])
    machines = Machines(base, tmp_path / "logs")
    figures = Figures("scale-out[2 web, 2 worker+outbox, 2 beat]", faults="none (two of each)")
    tag = "scale"
    try:
        webs = [machines.web("web-a"), machines.web("web-b")]
        config = _simulator_config(f"{webs[0]}/webhook", status_delay_s=0.01, enforce_window=False)
        config.tenants["home"] = replace(config.tenants["home"], mps=MPS)
        with running_simulator(config) as simulator:
            graph = {"GRAPH_API_URL": simulator.url}
            for name in ("worker-1", "worker-2"):
                machines.worker(name, graph)
            for name in ("beat-1", "beat-2"):
                machines.beat(name, graph)
            started = time.monotonic()
            sender = MetaLikeSender([f"{url}/webhook" for url in webs])
            pids = {n: machines.pid(n) for n in ("web-a", "web-b", "worker-1", "worker-2")}
            with PeakRss(pids) as rss:
                pool = sender.run(DELIVERIES, tag, threads=4, rate_per_s=10)
                orchestrator = machines.orchestrator("orchestrator", tag, SENDS, 20, USERS)
                orchestrator.wait(120)
                for thread in pool:
                    thread.join(120)

                settled = wait(
                    lambda: (
                        set(message_ids(client, tag)) >= sender.accepted
                        and len(sent_keys(simulator, tag, 10 * SENDS)) >= SENDS
                        and outbound_journal(client).size() == 0
                        and ingest_journal(client).size() == 0
                    ),
                    120,
                    every_s=0.2,
                )
                # Let beat come due a few more times with both running.
                time.sleep(max(0.0, 45 - (time.monotonic() - started)))
                elapsed = time.monotonic() - started
            figures.peak_rss_mb = rss.peak
            ids = message_ids(client, tag)
            keys = sent_keys(simulator, tag, 10 * SENDS)
            records = [
                m
                for m in simulator.state.messages(limit=10 * SENDS)
                if str(m["key"]).startswith(f"{tag}-")
            ]
            rejected = simulator.state.stats()["sends"]["rejected"]
    finally:
        machines.stop_all()
        server.stop()

    at_home = [m["accepted_at"] for m in records if m["phone_number_id"] == HOME]
    burst = MPS * 1.0  # SendLimiter's number_burst_s: one second of the rate
    per_1s, per_5s = max_in_window(at_home, 1.0), max_in_window(at_home, 5.0)
    fired = beat_firings(machines, ["beat-1", "beat-2"])
    skipped = Counter(
        line["entry"]
        for beat in ("beat-1", "beat-2")
        for line in machines.log_lines(beat)
        if line.get("event") == "beat.skipped"
    )
    figures.messages_in = len(sender.accepted) + SENDS
    figures.messages_out = len(set(ids)) + len(keys)
    figures.lost = len(sender.accepted - set(ids)) + (SENDS - len(keys))
    figures.duplicated = (len(ids) - len(set(ids))) + sum(n - 1 for n in keys.values())
    sweeps = [beat for _, beat in fired.get("sweep-journals", [])]
    figures.notes = (
        f"max_sends_per_number[1s={per_1s} 5s={per_5s}; bound B+mps*w={burst + MPS:g}/"
        f"{burst + 5 * MPS:g} at mps={MPS}] rejected_by_meta={rejected}"
        f" sweeps_fired={len(sweeps)} by={dict(Counter(sweeps))} skipped={dict(skipped)}"
        f" elapsed={elapsed:.0f}s"
    )
    figures.report()
    assert settled, figures.line()
    assert sender.abandoned == set()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    # The number's pace holds across both workers: at most the burst plus the rate over any
    # window (GCRA's bound, docs/outbound-limits.md), with half a second for the time between
    # a reservation and its call reaching the simulator. Two limiters of their own would let
    # through twice the rate.
    assert per_5s <= burst + MPS * 5.5, figures.line()
    # Only one beat's jobs ran: both beats came due (one fired, the other skipped), and no
    # two firings of an entry, whichever beat fired them, were closer than the lock allows.
    assert skipped["sweep-journals"] >= 1, figures.line()
    for entry, times in fired.items():
        period = beat_schedule[entry]["schedule"]
        if isinstance(period, float):
            gaps = [b[0] - a[0] for a, b in zip(times, times[1:], strict=False)]
            assert min(gaps, default=period) >= 0.9 * period - 0.05, (entry, gaps)
