"""The beat process's own app: light to import, yet its sweeps reach a real worker and run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEP = "alfred.sweep_journals"
# What beat must not load: the task modules and what only they need.
HEAVY = (
    "alfred.tasks",
    "alfred.ingest",
    "alfred.outbound",
    "alfred.journals",
    "alfred.models",
    "alfred.db",
    "sqlalchemy",
    "flask",
    "requests",
    "marshmallow",
    "aiohttp",
    "flower",
    "tornado",
)


def _environment(redis_url: str) -> dict[str, str]:
    """Return a child's environment: this repository importable, the test Redis as broker."""
    return {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": redis_url}


def test_beat_app_imports_no_task_module(redis_url):
    """Importing the beat app, and loading its tasks as beat does, imports nothing heavy."""
    code = textwrap.dedent(
        """
        import json, sys
        from alfred.beat_app import app
        app.loader.import_default_modules()  # what `beat` does at start
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_environment(redis_url),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_schedule_names_the_sweep_task_the_worker_registers():
    """Beat's schedule sends its tasks by name; the worker's app registers those very names."""
    from alfred.beat_app import app as beat
    from alfred.celery_app import celery as worker

    names = {entry["task"] for entry in beat.conf.beat_schedule.values()}
    assert names == {
        SWEEP,
        "alfred.rotate_tokens",
        "alfred.pii_lifecycle",
        "alfred.evaluate_alerts",
    }
    weekly = beat.conf.beat_schedule["rotate-tokens"]["schedule"]
    assert (weekly.minute, weekly.hour, weekly.day_of_week) == ({0}, {3}, {1})
    assert beat.conf.broker_url == worker.conf.broker_url
    worker.loader.import_default_modules()
    assert names <= set(worker.tasks)


def _start_fast_beat(tmp_path: Path, redis_url: str) -> subprocess.Popen:
    """Start the beat launcher with the sweep due every second instead of every ten."""
    launcher = tmp_path / "fast_beat.py"
    launcher.write_text(
        textwrap.dedent(
            """
            from alfred.beat_app import app, main
            entry = dict(app.conf.beat_schedule["sweep-journals"], schedule=1.0)
            app.conf.beat_schedule = {"sweep-journals": entry}
            main()
            """
        )
    )
    return subprocess.Popen(
        [sys.executable, str(launcher), "--schedule", str(tmp_path / "schedule"), "-l", "INFO"],
        env=_environment(redis_url),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the kill below takes everything it started
    )


def _stop(proc: subprocess.Popen) -> str:
    """Stop a started process group and return what it printed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=5)
    return out.decode(errors="replace")


def _queued_tasks(redis_client, queue: str) -> list[str]:
    """Return the task names of the messages waiting in a Celery queue on Redis."""
    return [json.loads(raw)["headers"]["task"] for raw in redis_client.lrange(queue, 0, -1)]


@pytest.mark.timeout(30)
def test_beat_publishes_the_sweep_and_a_worker_runs_it(
    tmp_path, redis_client, redis_url, monkeypatch
):
    """A real beat process queues `alfred.sweep_journals`; the real worker app runs it."""
    beat = _start_fast_beat(tmp_path, redis_url)
    try:
        deadline = time.monotonic() + 10
        while SWEEP not in _queued_tasks(redis_client, "alfred") and time.monotonic() < deadline:
            assert beat.poll() is None, _stop(beat)
            time.sleep(0.1)
    finally:
        output = _stop(beat)
    assert SWEEP in _queued_tasks(redis_client, "alfred"), output

    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    from alfred import runtime
    from alfred.celery_app import celery

    monkeypatch.setenv("REDIS_URL", redis_url)
    runtime.reset()
    ran = threading.Event()

    def _record(sender=None, state=None, **_kwargs):
        if sender is not None and sender.name == SWEEP and state == "SUCCESS":
            ran.set()

    task_postrun.connect(_record, weak=False)
    try:
        with start_worker(
            celery,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=["alfred"],
            loglevel="WARNING",
            shutdown_timeout=10.0,
        ):
            assert ran.wait(10), "the worker did not run the sweep that beat queued"
    finally:
        task_postrun.disconnect(_record)
        runtime.reset()
