"""A worker SIGKILLed or SIGTERMed mid-load in both directions, and restarted after a second.

Real processes: gunicorn (gunicorn.conf.py) taking deliveries from a sender that retries as Meta
does, and Celery workers; the orchestrator's sends go through `send_message.delay` to the
simulator, whose status webhooks come back to our web as Meta's do. No beat runs: what the
stopped worker held comes back through the restarted worker's own re-drive. Every event must
reach «alfred-ingest» once, every message be sent once (the simulator counts the calls it
accepted per idempotency key), and nothing be left in a journal or a queue.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from tests.integration.test_send_pipeline import open_window
from tests.resilience.harness import (
    Figures,
    MetaLikeSender,
    PeakRss,
    pending,
    running_stack,
    stream_events,
    stream_ids,
    wait,
)

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
DELIVERIES = 300
SENDS = 200
USERS = [f"+4477011{n:05d}" for n in range(SENDS)]  # one each: no pair limit in the way


def _publish_sends(keys: list[str], rate_per_s: float) -> threading.Thread:
    """Hand the sends over as the orchestrator does, from a thread, at about the given rate."""
    from alfred.tasks import send_message

    def run() -> None:
        for key, user in zip(keys, USERS, strict=True):
            send_message.delay(
                {"tenant_id": "biz", "to": user, "type": "text",
                 "text": {"body": f"answer {key}"}, "idempotency_key": key}
            )  # fmt: skip
            time.sleep(1 / rate_per_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_worker_stopped_mid_load_both_ways_delivers_everything_once(
    meta, env, redis_client, tmp_path, sig
):
    name = signal.Signals(sig).name
    open_window(env["DATABASE_URL"], "biz", *[u.lstrip("+") for u in USERS])
    keys = [f"{name.lower()}-{n:04d}" for n in range(SENDS)]
    figures = Figures(f"worker-{name.lower()}-restart", faults=f"worker {name}, restarted 1s later")

    def sent() -> Counter:
        return Counter(m["key"] for m in meta.state.messages(limit=10 * SENDS))

    with running_stack(tmp_path) as stack:
        sender = MetaLikeSender(f"{stack.url}/webhook")
        with PeakRss(stack.pids()) as rss:
            pool = sender.run(DELIVERIES, name.lower(), rate_per_s=60)
            publisher = _publish_sends(keys, rate_per_s=40)
            # Mid-load in both directions: a third of each already through.
            assert wait(
                lambda: len(sender.accepted) >= DELIVERIES // 3 and len(sent()) >= SENDS // 3, 60
            ), stack.log_tail()
            at_signal = (len(set(stream_ids(redis_client)) & sender.accepted), len(sent()))
            signalled = time.monotonic()
            os.killpg(stack.worker.pid, sig)  # SIGTERM: a warm shutdown, as Fly stops it
            stack.worker.wait(30)
            stopped = time.monotonic()
            time.sleep(1.0)  # what a supervisor's restart takes, roughly
            rss.pids["worker"] = stack.start_worker().pid
            restarted = time.monotonic()
            for thread in [*pool, publisher]:
                thread.join(120)
            settled = wait(
                lambda: (
                    set(stream_ids(redis_client)) >= sender.accepted
                    and set(sent()) >= set(keys)
                    and not pending(redis_client)
                ),
                90,
            )
            drained = time.monotonic()
            ids, calls, left = stream_ids(redis_client), sent(), pending(redis_client)
            entries = stream_events(redis_client)
        figures.peak_rss_mb = rss.peak
    events = set(ids) & sender.accepted
    figures.messages_in = len(sender.accepted) + len(keys)
    figures.messages_out = len(events) + len(set(calls) & set(keys))
    figures.lost = len(sender.accepted - events) + len(set(keys) - set(calls))
    # Statuses included: the simulator's status webhooks are events in the stream too.
    figures.duplicated = (len(entries) - len(set(entries))) + sum(n - 1 for n in calls.values())
    figures.recovery_s = drained - restarted
    figures.notes = (
        f"inbound={len(events)}/{len(sender.accepted)} sends={len(set(calls))}/{len(keys)}"
        f" statuses={sum(1 for e in set(entries) if e[0] == 'status')}"
        f" at_signal=ingested:{at_signal[0]},sent:{at_signal[1]}"
        f" stop_took={stopped - signalled:.1f}s"
        f" left={left or 'nothing'}"
    )
    figures.report()
    assert settled, figures.line() + "\n" + stack.log_tail()
    assert at_signal[0] < DELIVERIES and at_signal[1] < SENDS, "the signal must land mid-load"
    assert sender.abandoned == set()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    assert meta.state.stats()["duplicates"]["count"] == 0
    assert figures.messages_in == DELIVERIES + SENDS
