"""What the resilience scenarios share: private servers, a Meta-like sender, RSS, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from alfred.config import REPO_ROOT
from alfred.ingest.receive import READY_KEY
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers
from tests.processes import (  # noqa: F401 - PrivateRedis: the scenarios' Redis
    PrivateRedis,
    consuming,
    kill,
    spawn,
    start_gunicorn,
    start_worker,
    stop,
)

REPORT_FILE = REPO_ROOT / "var" / "resilience-report.txt"
REPORT: list[str] = []


@dataclass
class Figures:
    """One scenario's line: messages in and out, faults, lost, duplicated, recovery, peak RSS."""

    scenario: str
    messages_in: int = 0
    messages_out: int = 0
    faults: str = ""
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    def line(self) -> str:
        rss = " ".join(f"{k}={v:.0f}MB" for k, v in self.peak_rss_mb.items())
        recovery = "n/a" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        return (
            f"{self.scenario}: in={self.messages_in} out={self.messages_out} faults={self.faults}"
            f" lost={self.lost} duplicated={self.duplicated} recovery={recovery}"
            f" peak_rss[{rss}]" + (f" {self.notes}" if self.notes else "")
        )

    def report(self) -> None:
        """Keep the line for the terminal summary and var/resilience-report.txt."""
        REPORT.append(self.line())
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        with REPORT_FILE.open("a", encoding="utf-8") as handle:
            handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + self.line() + "\n")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


class PeakRss:
    """Sample the RSS of named process trees in a thread; keep each one's peak."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.25):
        self.pids, self.every_s = pids, every_s
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], tree_rss_mb(pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def delivery(i: int, tag: str) -> tuple[str, bytes]:
    """A fresh delivery of one text message with its own wamid; return the wamid and body."""
    payload = fixture("text")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = f"wamid.{tag}.{i:06d}"
    return message["id"], body_of(payload)


@dataclass
class Answer:
    status: int | None  # None: no answer (timeout, refused)
    seconds: float
    at: float


class MetaLikeSender:
    """POST deliveries as Meta does: a non-2xx or no answer is retried at once, then backing off."""

    def __init__(
        self, url: str | list[str], timeout_s: float = 5.0, give_up_after_s: float = 120.0
    ):
        # Several URLs: several web processes behind no balancer; delivery i goes to i mod n.
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url, self.timeout_s, self.give_up_after_s = self.urls[0], timeout_s, give_up_after_s
        self.answers: list[Answer] = []
        self.accepted: set[str] = set()
        self.abandoned: set[str] = set()
        self.session = requests.Session()
        self._lock = threading.Lock()

    def post(self, wamid: str, body: bytes, url: str | None = None) -> None:
        """Deliver one body until it is answered 200 (or the sender gives up)."""
        url = url or self.url
        headers = signed_headers(body, APP_SECRET)
        started, delay = time.monotonic(), 0.0
        while time.monotonic() - started < self.give_up_after_s:
            at = time.monotonic()
            try:
                status = requests.post(
                    url, data=body, headers=headers, timeout=self.timeout_s
                ).status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.answers.append(Answer(status, time.monotonic() - at, at))
            if status == 200:
                with self._lock:
                    self.accepted.add(wamid)
                return
            time.sleep(delay)
            delay = min(max(delay * 2, 0.25), 4.0)  # at once, then backing off
        with self._lock:
            self.abandoned.add(wamid)

    def run(self, count: int, tag: str, threads: int = 4, rate_per_s: float = 50.0):
        """Deliver `count` fresh deliveries from several threads at about the given rate.

        Each body is stamped when first sent, and its retries resend it unchanged, as Meta's do.
        Returns the threads; join them to wait for the end.
        """
        queue = list(range(count))
        lock = threading.Lock()
        interval = threads / rate_per_s

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop(0)
                began = time.monotonic()
                self.post(*delivery(index, tag), url=self.urls[index % len(self.urls)])
                time.sleep(max(0.0, interval - (time.monotonic() - began)))

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        for thread in pool:
            thread.start()
        return pool


def stream_ids(client: redis.Redis, stream: str = "alfred-ingest") -> list[str]:
    """Every event id in the stream, in order, duplicates kept."""
    return [json.loads(fields[b"payload"])["id"] for _, fields in client.xrange(stream)]


def message_ids(client: redis.Redis, tag: str) -> list[str]:
    """The ids of the message events in «alfred-ingest» from deliveries tagged `tag`."""
    ids = []
    for _, fields in client.xrange("alfred-ingest"):
        envelope = json.loads(fields[b"payload"])
        if envelope["event"] == "message" and envelope["id"].startswith(f"wamid.{tag}."):
            ids.append(envelope["id"])
    return ids


def sent_keys(simulator, tag: str, limit: int) -> Counter:
    """How often the simulator accepted each idempotency key tagged `tag`."""
    return Counter(
        m["key"]
        for m in simulator.state.messages(limit=limit)
        if str(m["key"]).startswith(f"{tag}-")
    )


def stream_events(client: redis.Redis, stream: str = "alfred-ingest") -> list[tuple]:
    """Every entry's identity as the dedupe sees it, in order, duplicates kept: (event, id) and,
    for a status, which status (one wamid has sent, delivered, read: three events)."""
    events = []
    for _, fields in client.xrange(stream):
        envelope = json.loads(fields[b"payload"])
        events.append((envelope["event"], envelope["id"], envelope.get("status")))
    return events


def env_for(redis_url: str, base: dict) -> dict:
    """The environment of a subprocess pointed at this Redis."""
    return {**os.environ, **base, "REDIS_URL": redis_url}


# Every journal (alfred/*/tasks.py register them) and every queue of the worker (celeryconfig).
JOURNALS = ("ingest", "outbound", "audit", "read", "media")
QUEUES = ("ingest", "outbound", "alfred")


def pending(client: redis.Redis) -> dict[str, int]:
    """What is left to do, by place: journals, the ingest ready list, Celery's queues (non-zero)."""
    counts = {f"journal:{name}": client.zcard(f"alfred:journal:{name}:due") for name in JOURNALS}
    counts["ingest-ready"] = client.llen(READY_KEY)
    counts.update({f"queue:{queue}": client.llen(queue) for queue in QUEUES})
    return {place: count for place, count in counts.items() if count}


def wait(predicate, limit_s: float, every_s: float = 0.1) -> bool:
    """Poll until predicate() is true or the limit passes; say which."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False


class Stack:
    """The bridge's own processes for one scenario: gunicorn and Celery workers, each logging to
    a file under `directory` (kept by pytest's tmp_path, and quoted when a scenario fails)."""

    def __init__(self, directory: Path, env: dict | None = None):
        self.directory, self.env = directory, dict(env or {})
        self.web: subprocess.Popen | None = None
        self.url = ""
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None

    def start_web(self, port: int | None = None) -> str:
        """Start gunicorn (gunicorn.conf.py), on `port` if given (a restart); return its URL."""
        self.web, self.url = start_gunicorn(self.env, port=port, log=self.directory / "web.log")
        return self.url

    def start_worker(self, **extra_env: str) -> subprocess.Popen:
        """Start a Celery worker (threads, as the Procfile); it joins the list of workers."""
        worker = start_worker(
            {**self.env, **extra_env}, log=self.directory / "worker.log", level="INFO"
        )
        self.workers.append(worker)
        return worker

    def start_beat(self) -> subprocess.Popen:
        """Start beat as the Procfile does, with a schedule file of its own."""
        self.beat = spawn(
            [sys.executable, "-m", "alfred.beat_app", "--schedule",
             str(self.directory / "beat-schedule")],
            self.env,
            self.directory / "beat.log",
        )  # fmt: skip
        return self.beat

    @property
    def worker(self) -> subprocess.Popen:
        """The worker started last."""
        return self.workers[-1]

    def pids(self) -> dict[str, int]:
        """The process trees to sample for RSS."""
        pids = {"web": self.web.pid} if self.web else {}
        if self.workers:
            pids["worker"] = self.worker.pid
        return pids

    def log_tail(self, name: str = "worker", chars: int = 3000) -> str:
        """The end of a process's log, for a failure's message."""
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the web and kill every worker still running."""
        if self.web is not None:
            stop(self.web)
        if self.beat is not None:
            kill(self.beat)
        for worker in self.workers:
            if worker.poll() is None:
                kill(worker)


@contextmanager
def running_stack(
    directory: Path,
    env: dict | None = None,
    *,
    web: bool = True,
    beat: bool = False,
    port: int | None = None,
):
    """Run the web and one worker (and beat, if asked) for the block, the worker consuming.

    `env` is given to every process (REDIS_URL for a private Redis, …) on top of the test's;
    `port` is the web's, when something (the simulator's webhooks) must know it beforehand.
    """
    stack = Stack(directory, env)
    try:
        if web:
            stack.start_web(port)
        stack.start_worker()
        if beat:
            stack.start_beat()
        redis_url = stack.env.get("REDIS_URL") or os.environ["REDIS_URL"]
        consuming(redis.Redis.from_url(redis_url))
        yield stack
    finally:
        stack.stop()
