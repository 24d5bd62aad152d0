"""The web process SIGKILLed mid-load and restarted, while a sender retries as Meta does."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.processes import stop
from tests.resilience.harness import (
    Figures,
    MetaLikeSender,
    PeakRss,
    running_stack,
    stream_ids,
    wait,
)

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(400),
]
DELIVERIES = 300


def test_web_sigkilled_mid_load_loses_and_duplicates_nothing(env, redis_client, tmp_path):
    # Meta's retries keep their timestamps: after a restart of ~10 s they are late, and the
    # seed's policy would quarantine them (replayable). `deliver` sends them on, marked late.
    figures = Figures("web-sigkill-restart", faults="gunicorn master and workers SIGKILLed")
    with running_stack(tmp_path, {"WEBHOOK_STALE_POLICY": "deliver"}) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        sender = MetaLikeSender(f"{stack.url}/webhook")
        with PeakRss({"worker": stack.worker.pid}) as rss:
            pool = sender.run(DELIVERIES, "webkill", rate_per_s=60)
            assert wait(lambda: len(sender.accepted) >= DELIVERIES // 3, 60)
            stop(stack.web, signal.SIGKILL)
            killed = time.monotonic()
            stack.start_web(port=port)
            restarted = time.monotonic()
            for thread in pool:
                thread.join(180)
            settled = wait(lambda: set(stream_ids(redis_client)) >= sender.accepted, 120)
            ids = stream_ids(redis_client)
            late = sum(
                1
                for _, fields in redis_client.xrange("alfred-ingest")
                if json.loads(fields[b"payload"]).get("late")
            )
        figures.peak_rss_mb = rss.peak
    back = [a.at + a.seconds for a in sender.answers if a.status == 200 and a.at >= killed]
    figures.messages_in = len(sender.accepted)
    figures.messages_out = len(set(ids))
    figures.lost = len(sender.accepted - set(ids))
    figures.duplicated = len(ids) - len(set(ids))
    figures.recovery_s = (min(back) - killed) if back else None
    failed = [a for a in sender.answers if a.status != 200]
    figures.notes = (
        f"restart_took={restarted - killed:.1f}s retried_answers={len(failed)}"
        f" delivered_late={late}"
        f" statuses={sorted({a.status for a in failed}, key=str)}"
    )
    figures.report()
    assert settled, figures.line()
    assert sender.abandoned == set()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    assert figures.messages_in == DELIVERIES
