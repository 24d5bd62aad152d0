"""No open doors: Flower, the metrics port and the web's surfaces refuse the public, leak nothing.

Real processes, as the Procfile runs them: gunicorn with gunicorn.conf.py (whose workers also
serve METRICS_PORT), `celery worker`, and `python -m alfred.operations.flower`, against a
private redis-server that requires a password and a PostgreSQL URL carrying one. What
docs/operations.md promises is checked from outside:

- Flower asks for its credentials on every page, its API and its /metrics, and listens on
  loopback unless FLOWER_ADDRESS says otherwise (fly.toml: the private network, fly-local-6pn);
- the metrics port listens on loopback unless METRICS_ADDR says otherwise (fly.toml: `::`,
  with no [[services]] mapping it, so Fly's public proxy never reaches it);
- the public web port has no /metrics and no admin surface; its refusals say why;
- no answer of any of them holds a secret (tokens, app secret, verify token, passwords, keys).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from alfred.config import REPO_ROOT
from tests.conftest import APP_SECRET, PII_HASH_KEY, TENANTS, VERIFY_TOKEN, free_port
from tests.helpers import body_of, fixture, signed_headers
from tests.processes import kill, start_gunicorn, start_worker, stop

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(180),
]
REDIS_PASSWORD = "redis-passw0rd-R3D1S"
DB_PASSWORD = "db-passw0rd-D4T4"
FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-passw0rd-FL0W"
PAGERDUTY_KEY = "pd-routing-key-R0UT1NG"
# Flower's pages, its API and its own /metrics; /healthcheck is Flower's unauthenticated "OK".
FLOWER_PATHS = ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks",
                "/api/task/types", "/api/queues/length", "/metrics")  # fmt: skip
# What an attacker would try on the public port.
PROBES = ("/admin", "/flower", "/metrics", "/api/workers", "/_sim/stats", "/_sim/faults",
          "/console", "/debug", "/live/worker", "/.env", "/config")  # fmt: skip


def secrets(env: dict) -> dict[str, str]:
    """Every secret of the run, by name."""
    return {
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "redis password": REDIS_PASSWORD,
        "database password": DB_PASSWORD,
        "FLOWER_BASIC_AUTH password": FLOWER_PASSWORD,
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY,
        "ALFRED_ENCRYPTION_KEY": env["ALFRED_ENCRYPTION_KEY"],
        "PII_HASH_KEY": PII_HASH_KEY,
        **{f"{t} token": spec["token"] for t, spec in TENANTS.items()},
    }


def leaks(text: str, env: dict) -> list[str]:
    """Name the secrets that appear in an answer."""
    return [name for name, value in secrets(env).items() if value in text]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on a TCP port (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def wait_for_port(port: int, process: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the process exited with {process.returncode}"
        if listening_addresses(port):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def locked_redis(tmp_path):
    """A redis-server of the test's own that requires a password."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process, 20)
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def stack(env, locked_redis, tmp_path):
    """web (with the metrics port), worker and flower, each as the Procfile starts it."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    user, rest = env["DATABASE_URL"].split("://", 1)[1].split("@", 1)
    extra = {
        "REDIS_URL": locked_redis,
        # PostgreSQL here trusts local connections: the password is carried, never checked.
        "DATABASE_URL": f"{env['DATABASE_URL'].split('://')[0]}://{user}:{DB_PASSWORD}@{rest}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY,
        "ALERT_NOTIFIER": "off",
    }
    for name in ("METRICS_ADDR", "FLOWER_ADDRESS"):  # the defaults are what is checked
        os.environ.pop(name, None)
    started: list[subprocess.Popen] = []
    try:
        web, url = start_gunicorn(extra)
        started.append(web)
        worker = start_worker(extra)
        started.append(worker)
        flower = subprocess.Popen(
            [sys.executable, "-m", "alfred.operations.flower"],
            cwd=REPO_ROOT, env={**os.environ, **extra}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(flower)
        wait_for_port(int(extra["FLOWER_PORT"]), flower)
        wait_for_port(int(extra["METRICS_PORT"]), web)
        yield {"web": url, **extra}
    finally:
        for process in reversed(started):
            if process is started[1]:
                kill(process)
            else:
                stop(process)


def test_flower_the_metrics_port_and_the_web_refuse_the_public_and_leak_nothing(stack, env):
    flower = f"http://127.0.0.1:{stack['FLOWER_PORT']}"
    metrics = f"http://127.0.0.1:{stack['METRICS_PORT']}"
    web = stack["web"]
    auth = (FLOWER_USER, FLOWER_PASSWORD)

    # Some traffic first, so every surface has something to show: a delivery the worker
    # ingests, a handshake, a refused post.
    body = body_of(fixture("text"))
    answer = requests.post(
        f"{web}/webhook", data=body, headers=signed_headers(body, APP_SECRET), timeout=10
    )
    assert answer.status_code == 200, answer.text

    # Flower: loopback only, and every page, its API and its /metrics ask for credentials.
    assert listening_addresses(int(stack["FLOWER_PORT"])) == {"127.0.0.1"}
    for path in FLOWER_PATHS:
        for credentials in (None, (FLOWER_USER, "wrong"), ("admin", FLOWER_PASSWORD)):
            refused = requests.get(flower + path, auth=credentials, timeout=10)
            assert refused.status_code == 401, (path, credentials, refused.status_code)
            assert not leaks(refused.text, env), path
    health = requests.get(f"{flower}/healthcheck", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")
    # With the credentials: what Flower shows (the worker, its config, the broker) holds no
    # secret, the broker's password included.
    deadline = time.monotonic() + 30
    workers: dict = {}
    while not workers and time.monotonic() < deadline:
        workers = requests.get(f"{flower}/api/workers?refresh=1", auth=auth, timeout=20).json()
        time.sleep(0.5)
    assert workers, "Flower never saw the worker"
    pages = [*FLOWER_PATHS, *(f"/worker/{name}" for name in workers)]
    for path in pages:
        shown = requests.get(flower + path, auth=auth, timeout=20)
        assert shown.status_code == 200, (path, shown.status_code)
        assert not leaks(shown.text, env), (path, leaks(shown.text, env))

    # The metrics port: loopback only (METRICS_ADDR's default), and no secret in what it shows.
    assert listening_addresses(int(stack["METRICS_PORT"])) == {"127.0.0.1"}
    scraped = requests.get(f"{metrics}/metrics", timeout=10)
    assert scraped.status_code == 200 and "alfred_webhook_requests_total" in scraped.text
    assert not leaks(scraped.text, env), leaks(scraped.text, env)
    for path in ("/", "/admin", "/live/nobody", "/metrics/../.env"):
        other = requests.get(metrics + path, timeout=10)
        assert other.status_code in (404, 503), (path, other.status_code)
        assert not leaks(other.text, env), path

    # The public web port: no metrics, no admin surface, refusals with a reason, no secrets.
    for path in PROBES:
        probe = requests.get(web + path, timeout=10)
        assert probe.status_code == 404, (path, probe.status_code)
        assert not leaks(probe.text, env), path
    for path in ("/healthz", "/readyz"):
        health = requests.get(web + path, timeout=10)
        assert health.status_code == 200, (path, health.text)
        assert not leaks(health.text, env), path
    handshake = requests.get(
        f"{web}/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        timeout=10,
    )
    assert handshake.status_code == 403 and handshake.json()["error"] == "handshake_refused"
    unsigned = requests.post(
        f"{web}/webhook", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert unsigned.status_code == 403 and unsigned.json()["error"] == "bad_signature"
    for answer in (handshake, unsigned):
        assert not leaks(answer.text, env)
