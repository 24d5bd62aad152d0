"""`python -m alfred doctor` against the simulator and our own web server, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from alfred.config import REPO_ROOT
from alfred.operations.doctor import HEARTBEATS_KEY

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def doctor(web_server: str, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra}
    return subprocess.run(
        [sys.executable, "-m", "alfred", "doctor", "--webhook-url", f"{web_server}/webhook"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def healthy(redis_client):
    # What a running stack leaves: beat's heartbeat.
    redis_client.hset(HEARTBEATS_KEY, "beat", f"{time.time():.3f}")


def test_doctor_passes_a_healthy_setup(simulator, web_server, healthy):
    done = doctor(web_server, PAGERDUTY_ROUTING_KEY="r" * 32)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("subscription", "number", "token", "webhook", "redis", "database", "beat"):
        assert f"ok    home      {name}" in done.stdout or f"ok    services  {name}" in done.stdout
    assert "doctor: all checks passed" in done.stdout


def test_doctor_names_a_missing_subscription(simulator, web_server, healthy):
    waba = "310000000000001"  # home's (tests/conftest.py)
    simulator.state.call(lambda sim: sim.state.subscriptions.pop(waba))
    done = doctor(web_server, PAGERDUTY_ROUTING_KEY="r" * 32)
    assert done.returncode == 1
    assert f"FAIL  home      subscription  no app is subscribed to WABA {waba}" in done.stdout
    assert "doctor: 1 wrong: home subscription" in done.stderr
    assert "ok    biz       subscription" in done.stdout


def test_doctor_names_a_wrong_verify_token_and_a_missing_pagerduty_key(simulator, web_server):
    done = doctor(web_server, META_VERIFY_TOKEN="not-the-one-web-has")
    assert done.returncode == 1
    assert "FAIL  services  webhook" in done.stdout and "answered 403" in done.stdout
    assert "FAIL  services  pagerduty     PAGERDUTY_ROUTING_KEY is not set" in done.stdout
    assert "FAIL  services  beat          beat has never run" in done.stdout
