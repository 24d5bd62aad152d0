"""What REDIS_WAIT_REPLICAS costs the webhook, on a private Sentinel set-up (master + 2 replicas).

    .venv/bin/python bench/wait_latency.py [--requests 1000]

Two webs (gunicorn.conf.py) on the same sentinels, one with `REDIS_WAIT_REPLICAS=1` and one
without; one signed delivery at a time, alternating between them, so that whatever else the
machine does weighs on both alike. Then the same for `accept_delivery` alone, in this process,
without HTTP. Prints p50/p95/p99 in ms for each. No worker runs: the journal just fills. Not a
test: a figure for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alfred.ingest.receive import accept_delivery, ingest_journal  # noqa: E402
from alfred.redis_client import get_redis  # noqa: E402
from tests.conftest import APP_SECRET, ENCRYPTION_KEY, PII_HASH_KEY, TENANTS  # noqa: E402
from tests.helpers import body_of, fixture, signed_headers  # noqa: E402
from tests.processes import start_gunicorn, stop  # noqa: E402
from tests.resilience.sentinels import SentinelSet  # noqa: E402


def quantiles(samples: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of samples in seconds, in ms."""
    cuts = statistics.quantiles(samples, n=100)
    return {"p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wait-bench-"))
    sentinels = SentinelSet(folder / "sentinel", replicas=2).start()
    env = {
        "REDIS_URL": sentinels.url,
        "DATABASE_URL": f"sqlite:///{folder / 'alfred.db'}",
        "META_APP_SECRET": APP_SECRET,
        "ALFRED_TENANTS": json.dumps(TENANTS),
        "ALFRED_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "PII_HASH_KEY": PII_HASH_KEY,
        "ALFRED_VAR_DIR": str(folder / "var"),
        "METRICS_PORT": "0",
    }
    os.environ.update(env)
    webs = {}
    try:
        for replicas in (0, 1):
            webs[replicas] = start_gunicorn({**env, "REDIS_WAIT_REPLICAS": str(replicas)})
        session = requests.Session()
        http: dict[int, list[float]] = {0: [], 1: []}
        for i in range(2 * args.requests):
            replicas = i % 2
            payload = fixture("text")
            payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.b.{i}"
            body = body_of(payload)
            started = time.perf_counter()
            answer = session.post(
                f"{webs[replicas][1]}/webhook", data=body, headers=signed_headers(body, APP_SECRET)
            )
            http[replicas].append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
        journal = ingest_journal(get_redis(sentinels.url))
        direct: dict[int, list[float]] = {0: [], 1: []}
        for i in range(2 * args.requests):
            replicas = i % 2
            started = time.perf_counter()
            accept_delivery(
                b"{}", received_at=time.time(), journal=journal, publish=lambda _id: None,
                wait_replicas=replicas, wait_timeout_ms=100,
            )  # fmt: skip
            direct[replicas].append(time.perf_counter() - started)
    finally:
        for process, _ in webs.values():
            stop(process)
        sentinels.stop()
    load = os.getloadavg()
    for name, samples in (("webhook POST", http), ("accept_delivery", direct)):
        for replicas in (0, 1):
            figures = " ".join(f"{k}={v:.2f}ms" for k, v in quantiles(samples[replicas]).items())
            print(f"{name:16} REDIS_WAIT_REPLICAS={replicas}: {figures} n={len(samples[replicas])}")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
