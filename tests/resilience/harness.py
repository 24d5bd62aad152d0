"""What the resilience scenarios share: private servers, a Meta-like sender, RSS, the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from alfred.config import REPO_ROOT
from tests.conftest import APP_SECRET, free_port
from tests.helpers import body_of, fixture, signed_headers

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


class PrivateRedis:
    """A redis-server of the test's own, on a free port, with AOF; killable and restartable."""

    def __init__(self, directory: Path, fsync: str = "everysec"):
        self.directory = directory
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", self.fsync, "--maxmemory-policy", "noeviction",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL it, as the OOM killer or a crashed host would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


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


def env_for(redis_url: str, base: dict) -> dict:
    """The environment of a subprocess pointed at this Redis."""
    return {**os.environ, **base, "REDIS_URL": redis_url}
