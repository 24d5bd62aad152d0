"""Ten times the seed's load: web and worker memory stay bounded; the answer is back-pressure.

The Procfile's web (gunicorn with gunicorn.conf.py) and worker (its exact line, the outbox
bridge inside) run as subprocesses, with the simulator as a process of its own. For LOAD_S
seconds the test offers RATE signed deliveries a second to POST /webhook and RATE messages a
second to «alfred-outbox» (the orchestrator's stream), both open loop: what the machine could
not take shows as offered but not accepted. A delivery answered anything but 200 is retried
after the burst, as Meta retries; then everything drains, and every delivery answered 200 must
be in «alfred-ingest» exactly once and every message sent exactly once. Peak RSS of each
process tree is sampled throughout.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import redis
import requests

from alfred.config import REPO_ROOT
from alfred.outbound.pending import outbound_journal
from alfred.streams import OUTBOX_STREAM
from tests.conftest import APP_SECRET, TENANTS, free_port
from tests.helpers import signed_headers
from tests.integration.test_worker_kill import kill
from tests.processes import start_gunicorn, stop, wait_until_ready
from tests.resilience.harness import Figures, PeakRss, delivery, stream_ids

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(360),
]
RATE = int(os.environ.get("BURST_RATE", "500"))  # each way, per second: 10x the seed's 50
# 20 s, not the minute: on these 2 shared cores the drain of a minute's acceptance
# alone outlasts the scenario's 90 s budget; BURST_SECONDS=60 runs the full minute.
LOAD_S = float(os.environ.get("BURST_SECONDS", "20"))
# The backlog caps, low enough that this machine meets them within the burst (the defaults,
# 50,000 each, bound the same way further out).
CAP = 1000
# What the processes may reach at most: each gunicorn process of the web (master and 2
# workers) about 80 MB here; the worker about 110 MB. Bounded by design: 8 request threads
# holding at most one body each (4 MiB), 16 worker threads holding one task each.
WEB_RSS_MB, WORKER_RSS_MB = 400, 300
# Bounds on the Meta-like redelivery and on the drain after it: long enough for a loaded
# machine (on a quiet one both take about 30 s).
DRAIN_LIMIT_S = 120
POSTERS = 12  # threads posting deliveries, each with its own keep-alive session
# Meta's upgraded throughput, so that Meta's per-number limit is not what is measured.
FAST_TENANTS = {name: {**spec, "mps": 1000} for name, spec in TENANTS.items()}
TEMPLATE = {"name": "hello_world", "language": {"code": "en_US"}}  # needs no open window


def _procfile_worker() -> list[str]:
    """The Procfile's worker line, as Fly runs it."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            words = shlex.split(line.split(":", 1)[1])
            # This interpreter (the venv's) for `python …`, and `celery …` as `python -m celery`.
            head = [sys.executable] if words[0] == "python" else [sys.executable, "-m", words[0]]
            return head + words[1:]
    raise AssertionError("the Procfile has no worker line")


def _start_simulator(extra: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alfred.simulator"],
        cwd=REPO_ROOT,
        env={**os.environ, **extra, "SIMULATOR_PORT": str(port), "SIMULATOR_STATUS_FLOW": "",
             "SIMULATOR_PAIR_BURST": "1000"},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(f"{url}/_sim/health", process)
    return process, url


class Burst:
    """Offer deliveries and sends at a fixed rate for a while; keep every answer."""

    def __init__(self, web: str, client: redis.Redis):
        self.web, self.client = web, client
        self.answers: Counter = Counter()  # every answer, retries included
        self.first: Counter = Counter()  # each delivery's first answer, during the burst
        self.reasons: set[str] = set()
        self.accepted: set[str] = set()
        self.retry: list[tuple[str, bytes]] = []
        self.offered_in = self.offered_out = 0
        self.keys: list[str] = []
        self._lock = threading.Lock()
        self._next = 0

    def _post(
        self, session: requests.Session, wamid: str, body: bytes, first: bool = False
    ) -> int | None:
        reason = None
        try:
            answer = session.post(
                f"{self.web}/webhook", data=body, headers=signed_headers(body, APP_SECRET),
                timeout=5,
            )  # fmt: skip
            status: int | None = answer.status_code
            if status != 200:
                reason = _reason(answer)
        except requests.RequestException:
            status = None
        with self._lock:
            self.answers[status] += 1
            if first:
                self.first[status] += 1
            if reason:
                self.reasons.add(reason)
            if status == 200:
                self.accepted.add(wamid)
            else:
                self.retry.append((wamid, body))
        return status

    def _poster(self, until: float, started: float) -> None:
        session = requests.Session()
        while True:
            with self._lock:
                index = self._next
                self._next += 1
            due = started + index / RATE
            if due >= until or time.monotonic() >= until:  # late past the end: not offered
                return
            time.sleep(max(0.0, due - time.monotonic()))  # open loop: late is just late
            with self._lock:
                self.offered_in += 1
            self._post(session, *delivery(index, "burst"), first=True)

    def _sender(self, until: float, started: float) -> None:
        sent = 0
        while time.monotonic() < until:
            due = int((time.monotonic() - started) * RATE)
            pipe = self.client.pipeline(transaction=False)
            for i in range(sent, due):
                key = f"burst-{i:06d}"
                self.keys.append(key)
                message = {
                    "tenant_id": ("home", "biz")[i % 2],
                    "to": f"+4477{i:08d}",
                    "type": "template",
                    "template": TEMPLATE,
                    "idempotency_key": key,
                }
                pipe.xadd(OUTBOX_STREAM, {"payload": json.dumps(message)})
            pipe.execute()
            self.offered_out, sent = due, due
            time.sleep(0.05)

    def run(self, seconds: float) -> None:
        started = time.monotonic()
        until = started + seconds
        threads = [
            threading.Thread(target=self._poster, args=(until, started)) for _ in range(POSTERS)
        ]
        threads.append(threading.Thread(target=self._sender, args=(until, started)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 30)

    def redeliver(self, limit_s: float) -> None:
        """Retry what was not answered 200, as Meta does, until all are or the limit passes."""
        session = requests.Session()
        deadline = time.monotonic() + limit_s
        delay = 0.5
        while self.retry and time.monotonic() < deadline:
            pending, self.retry = self.retry, []
            for wamid, body in pending:
                if self._post(session, wamid, body) != 200:
                    time.sleep(0.01)
            if self.retry:
                time.sleep(delay)
                delay = min(delay * 2, 4.0)


def test_ten_times_the_seeds_load_keeps_memory_bounded_and_loses_nothing(env, redis_client):
    extra = {"ALFRED_TENANTS": json.dumps(FAST_TENANTS), "WEBHOOK_STALE_POLICY": "deliver",
             "ALERT_NOTIFIER": "off", "WEBHOOK_MAX_BACKLOG": str(CAP),
             "OUTBOUND_MAX_BACKLOG": str(CAP)}  # fmt: skip
    simulator, graph = _start_simulator(extra)
    extra["GRAPH_API_URL"] = graph
    web, url = start_gunicorn(extra)
    worker = subprocess.Popen(
        _procfile_worker(),
        cwd=REPO_ROOT, env={**os.environ, **extra}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    burst = Burst(url, redis_client)
    figures = Figures(f"burst-{RATE}-each-way-{LOAD_S:g}s", faults=f"{RATE}/s in and out")
    try:
        with (
            PeakRss({"web": web.pid, "worker": worker.pid, "simulator": simulator.pid}) as rss,
            PeakBacklog(redis_client) as backlog,
        ):
            started = time.monotonic()
            burst.run(LOAD_S)
            loaded = time.monotonic()
            backlog_at_end = outbound_journal(redis_client).size()
            burst.redeliver(DRAIN_LIMIT_S)
            offered_keys = set(burst.keys)

            def drained() -> bool:
                got = requests.get(f"{graph}/_sim/stats", timeout=10).json()
                return (
                    got["sends"]["accepted"] >= len(offered_keys)
                    and set(stream_ids(redis_client)) >= burst.accepted
                )

            deadline = time.monotonic() + DRAIN_LIMIT_S
            while not (settled := drained()) and time.monotonic() < deadline:
                time.sleep(1)
            done = time.monotonic()
            waiting = _still_waiting(redis_client)
        figures.peak_rss_mb = rss.peak
        stats = requests.get(f"{graph}/_sim/stats", timeout=10).json()
        sent = requests.get(
            f"{graph}/_sim/messages", params={"key_prefix": "burst-", "limit": 10**6}, timeout=30
        ).json()["data"]
        ids = stream_ids(redis_client)
    finally:
        stop(web)
        kill(worker)
        stop(simulator)
    sent_keys = [m["key"] for m in sent]
    figures.messages_in = len(burst.accepted) + len(offered_keys)
    figures.messages_out = len(set(ids)) + len(set(sent_keys))
    missing = len(burst.accepted - set(ids)) + len(offered_keys - set(sent_keys))
    # What is still journaled or in the stream is late, not lost: counted apart.
    figures.lost = max(0, missing - sum(waiting.values()))
    figures.duplicated = (len(ids) - len(set(ids))) + (len(sent_keys) - len(set(sent_keys)))
    figures.recovery_s = done - loaded
    load = os.getloadavg()[0]
    took = loaded - started
    figures.notes = (
        f"offered_in={burst.offered_in} ({burst.offered_in / LOAD_S:.0f}/s)"
        f" first_answers={dict(sorted(burst.first.items(), key=str))}"
        f" all_answers={dict(sorted(burst.answers.items(), key=str))}"
        f" offered_out={burst.offered_out} ({burst.offered_out / LOAD_S:.0f}/s)"
        f" still_waiting={waiting}"
        f" sent={len(set(sent_keys))} peak_backlog={backlog.peak} cap={CAP}"
        f" outbound_backlog_at_end={backlog_at_end}"
        f" rejected={stats['sends']['rejected']} burst_took={took:.0f}s"
        f" loadavg={load:.1f}"
    )
    figures.report()
    assert (figures.lost, figures.duplicated) == (0, 0), figures.line()
    assert settled, f"not drained within {DRAIN_LIMIT_S:g} s (late, not lost): {figures.line()}"
    assert burst.retry == [], figures.line()  # every delivery was answered 200 in the end
    # Every refusal was a 503 with its reason, never a 500 or a hang.
    assert set(burst.answers) <= {200, 503}, figures.line()
    assert burst.reasons <= {"backlog_full"}, burst.reasons
    # The bounds: the journals never passed their caps, the processes stayed within budget.
    assert max(backlog.peak.values()) <= CAP, figures.line()
    assert rss.peak["web"] <= WEB_RSS_MB and rss.peak["worker"] <= WORKER_RSS_MB, figures.line()


def _reason(answer: requests.Response) -> str:
    """The `error` of a refusal, or what the answer was when it was not our JSON."""
    try:
        return str(answer.json().get("error"))
    except ValueError:
        return f"not JSON ({answer.headers.get('Content-Type')})"


def _still_waiting(client: redis.Redis) -> dict[str, int]:
    """What waits for a worker: journaled deliveries and messages, outbox entries not enqueued."""
    try:
        (group,) = [
            g for g in client.xinfo_groups(OUTBOX_STREAM) if g["name"] == b"alfred-outbound"
        ]
        outbox = int(group.get("lag") or 0) + int(group["pending"])
    except (redis.ResponseError, ValueError):
        outbox = client.xlen(OUTBOX_STREAM)
    return {
        "ingest": client.hlen("alfred:journal:ingest:records"),
        "outbound": client.hlen("alfred:journal:outbound:records"),
        "outbox": outbox,
    }


class PeakBacklog:
    """Sample the journals' sizes in a thread; keep each one's peak."""

    def __init__(self, client: redis.Redis, every_s: float = 0.25):
        self.client, self.every_s = client, every_s
        self.peak = {"ingest": 0, "outbound": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.peak:
                size = self.client.hlen(f"alfred:journal:{name}:records")
                self.peak[name] = max(self.peak[name], size)
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakBacklog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
