"""Real processes of the stack for the operations tests: worker, outbox bridge, beat, web."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from alfred.config import REPO_ROOT

COMMANDS = {
    "worker": [
        "-m",
        "celery",
        "-A",
        "alfred.celery_app",
        "worker",
        "-P",
        "threads",
        "-c",
        "4",
        "-Q",
        "ingest,outbound,alfred",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "WARNING",
    ],
    "outbox": ["-m", "alfred", "outbox"],
    "beat": ["-m", "alfred.beat_app", "--loglevel", "WARNING"],
}


class Stack:
    """Starts processes with one environment; stops them all at the end."""

    def __init__(self, env: dict, logs):
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *argv: str, **extra_env: str) -> subprocess.Popen:
        command = [sys.executable, *(argv or COMMANDS[name])]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**self.env, **extra_env},
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def signal(self, name: str, signum: int = signal.SIGTERM) -> None:
        os.killpg(self.processes[name].pid, signum)

    def wait(self, name: str, timeout: float = 60) -> int:
        return self.processes[name].wait(timeout)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """GET /metrics on the metrics port: {(sample name, sorted labels): value}."""
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    answer.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    """Sum the samples of `name` whose labels include `labels` (None if there is none)."""
    found = [
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    ]
    return sum(found) if found else None


def wait_until(check, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    """Poll `check` until it returns a truthy value; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
