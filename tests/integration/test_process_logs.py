"""Every process logs the same JSON lines, `extra=` fields included: worker, beat, outbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alfred.config import REPO_ROOT


def json_lines(path: Path) -> list[dict]:
    """Return the lines of a process's stderr that are JSON objects, in order."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def non_json_lines(path: Path) -> list[str]:
    """Return the non-empty stderr lines that are not JSON (Celery's plain formatter, say)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            json.loads(line)
        except ValueError:
            if line.strip():
                out.append(line)
    return out


def wait_for_line(path: Path, predicate, process: subprocess.Popen, timeout: float = 60.0) -> dict:
    """Poll a process's stderr until a JSON line satisfies the predicate; fail on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in json_lines(path):
            if predicate(line):
                return line
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"no such log line; stderr was:\n{path.read_text(errors='replace')[-3000:]}")


def start(args: list[str], stderr: Path) -> subprocess.Popen:
    """Start a process of the bridge from the repository root, its stderr to a file."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        stdin=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    """End the process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_a_workers_log_line_is_json_with_its_extra_fields(env, tmp_path):
    from alfred.tasks import send_message

    stderr = tmp_path / "worker.err"
    worker = start(
        ["-m", "celery", "-A", "alfred.celery_app", "worker", "-P", "threads", "-c", "2",
         "-Q", "ingest,outbound,alfred", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "INFO"],
        stderr,
    )  # fmt: skip
    try:
        # An unknown tenant: the sender refuses it and logs why, with extra= fields.
        send_message.delay({"tenant_id": "nobody", "to": "+14155550100", "type": "text",
                            "text": {"body": "hi"}, "idempotency_key": "log-test"})  # fmt: skip
        line = wait_for_line(stderr, lambda r: r.get("event") == "send.invalid", worker)
    finally:
        stop(worker)
    assert line["level"] == "warning"
    assert line["logger"] == "alfred.outbound.service"
    assert line["tenant_id"] == "nobody"
    assert line["reason"] == "unknown_tenant"
    # Celery's own lines come out as JSON too: nothing in its plain format.
    assert any(r["logger"].startswith("celery") for r in json_lines(stderr))
    assert [x for x in non_json_lines(stderr) if " WARNING/" in x or " INFO/" in x] == []


def test_beats_log_lines_are_json_and_its_schedule_lives_under_var(env, tmp_path):
    stderr = tmp_path / "beat.err"
    var = Path(env["ALFRED_VAR_DIR"])
    beat = start(["-m", "alfred.beat_app", "--loglevel", "INFO"], stderr)
    try:
        line = wait_for_line(stderr, lambda r: r.get("logger") == "celery.beat", beat)
        # Beat logs that it starts, then opens its schedule: wait for the file, within bounds.
        deadline = time.monotonic() + 30
        while not list(var.glob("celerybeat-schedule*")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(beat)
    assert line["level"] == "info"
    assert list(var.glob("celerybeat-schedule*")), "beat keeps its schedule under var/"


def test_the_outbox_bridges_log_lines_are_json_with_their_extra_fields(env, tmp_path):
    stderr = tmp_path / "outbox.err"
    bridge = start(["-m", "alfred", "outbox"], stderr)
    try:
        line = wait_for_line(stderr, lambda r: r.get("event") == "outbox.started", bridge)
    finally:
        stop(bridge)
    assert line["stream"] == "alfred-outbox"
    assert line["consumer"]
