"""Flower, a real `flower` process: it refuses to start without credentials, and with them
every page, its API and its /metrics ask for them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time

import pytest
import requests

from alfred.config import REPO_ROOT
from tests.conftest import free_port

LAUNCHER = [sys.executable, "-m", "alfred.operations.flower"]


def flower_env(redis_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return {**env, "REDIS_URL": redis_url, **extra}


def test_flower_refuses_to_start_without_credentials_and_says_why(redis_url):
    done = subprocess.run(
        LAUNCHER,
        cwd=REPO_ROOT,
        env=flower_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start" in done.stderr
    assert "FLOWER_BASIC_AUTH is not set" in done.stderr


def test_flower_refuses_an_open_api_even_with_credentials(redis_url):
    env = flower_env(redis_url, FLOWER_BASIC_AUTH="ops:pw", FLOWER_UNAUTHENTICATED_API="true")
    done = subprocess.run(
        LAUNCHER, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "FLOWER_UNAUTHENTICATED_API" in done.stderr


@pytest.fixture
def flower(redis_url):
    port = free_port()
    env = flower_env(redis_url, FLOWER_BASIC_AUTH="ops:s3cret-pw", FLOWER_PORT=str(port))
    process = subprocess.Popen(
        LAUNCHER,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/healthcheck", timeout=1)
            break
        except requests.ConnectionError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(20)


def test_with_credentials_every_page_and_its_metrics_ask_for_them(flower):
    for path in ("/", "/workers", "/api/workers", "/metrics"):
        assert requests.get(flower + path, timeout=10).status_code == 401, path
        wrong = requests.get(flower + path, auth=("ops", "wrong"), timeout=10)
        assert wrong.status_code == 401, path
    assert requests.get(flower + "/", auth=("ops", "s3cret-pw"), timeout=10).status_code == 200
    metrics = requests.get(flower + "/metrics", auth=("ops", "s3cret-pw"), timeout=10)
    assert metrics.status_code == 200
    assert "flower_" in metrics.text
    token = base64.b64encode(b"ops:s3cret-pw").decode()
    api = requests.get(
        flower + "/api/workers", headers={"Authorization": f"Basic {token}"}, timeout=10
    )
    assert api.status_code == 200
