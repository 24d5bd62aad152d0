"""Fixtures giving real services: Redis, PostgreSQL and SQLite, a Celery worker, the simulator."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import create_engine, text

# Redis has 16 databases unless configured otherwise (`databases` in redis.conf).
REDIS_DATABASES = 16


def _worker_redis_url(base: str) -> str:
    """Give each pytest-xdist worker a database of its own: base index + the worker's number.

    Tests flush their database, so two workers on one index would empty each other's queues.
    Without xdist (PYTEST_XDIST_WORKER unset) the base URL is used as it is.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", … under pytest -n N
    if not worker:
        return base
    parts = urlsplit(base)
    index = int(parts.path.strip("/") or 0) + int(worker.removeprefix("gw"))
    if not 0 < index < REDIS_DATABASES:
        raise pytest.UsageError(
            f"xdist worker {worker} would use Redis database {index} of {base}: give "
            f"TEST_REDIS_URL an index from 1 with room for one database per worker "
            f"(below {REDIS_DATABASES}), or run fewer workers (-n)"
        )
    return parts._replace(path=f"/{index}").geturl()


BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
REDIS_URL = _worker_redis_url(BASE_REDIS_URL)
# celeryconfig reads REDIS_URL when first imported: point it at the test database first.
os.environ["REDIS_URL"] = REDIS_URL
# No metrics port from the test process's own workers; tests of the port set their own.
os.environ["METRICS_PORT"] = "0"

from alfred import runtime  # noqa: E402
from alfred.migrate import upgrade  # noqa: E402
from alfred.models import Base  # noqa: E402
from tests.blobstores import blob_store_url, moto_s3  # noqa: E402, F401 - fixtures
from tests.ports import free_port  # noqa: E402, F401 - imported from here by many tests

PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
APP_SECRET = "test-app-secret-äöå"
PREVIOUS_APP_SECRET = "previous-app-secret"
VERIFY_TOKEN = "verify-me"
# The token store's key (a server database refuses to run without one); the simulator's app id.
ENCRYPTION_KEY = "q_Hs02anO7iRKfoJJu6DLJrA00htkyN5kTJ8V9wjFQM="
META_APP_ID = "1234567890"
PII_HASH_KEY = "test-pii-hash-key-0123456789abcdef"
TENANTS = {
    # The same ids as the payloads in tests/data/webhooks.
    "home": {
        "phone_number_id": "110000000000001",
        "waba_id": "310000000000001",
        "token": "home-token-s3cret",
    },
    "biz": {
        "phone_number_id": "110000000000002",
        "waba_id": "310000000000002",
        "token": "biz-token-s3cret",
        "mps": 200,
    },
}


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Give the URL of a real Redis (a database index of its own), failing loudly if down."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.exit(f"Redis is not reachable at {REDIS_URL}: {exc} (make test starts one)", 2)
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """Give a client on an emptied test database; empty it again afterwards."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


# Database 0 of the test Redis, which no fixture flushes: tests that use it name every key and
# stream for themselves alone and delete them afterwards (they share it with other runs, and
# with the other xdist workers of this one).
SHARED_REDIS_URL = urlsplit(REDIS_URL)._replace(path="/0").geturl()


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    """Give a client of the test Redis's shared database 0 (see SHARED_REDIS_URL)."""
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """Create a fresh PostgreSQL database for this test run, migrated; drop it at the end."""
    name = f"alfred_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.exit(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}", 2)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    from alfred.db import get_engine

    get_engine(url).dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    """Create a migrated SQLite database file for this test run."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'alfred.db'}"
    upgrade(url)
    return url


def _empty(url: str) -> None:
    from alfred.db import get_engine

    with get_engine(url).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> Iterator[str]:
    """Give an emptied, migrated database: each test using it runs on SQLite and PostgreSQL."""
    url = request.getfixturevalue(f"{request.param}_url")
    _empty(url)
    yield url
    _empty(url)


@pytest.fixture
def env(monkeypatch, tmp_path, redis_client, redis_url, database_url) -> dict:
    """Point the bridge at the test services, with two tenants and known secrets."""
    values = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "PII_HASH_KEY": PII_HASH_KEY,
        "META_APP_SECRET": APP_SECRET,
        "META_APP_SECRET_PREVIOUS": PREVIOUS_APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "ALFRED_TENANTS": json.dumps(TENANTS),
        "ALFRED_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "META_APP_ID": META_APP_ID,
        "ALFRED_VAR_DIR": str(tmp_path / "var"),
        "WEBHOOK_MAX_SKEW_S": "10",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    yield values
    _reset_caches()


def _reset_caches() -> None:
    runtime.reset()
    from alfred.media.tasks import fetcher
    from alfred.outbound.tasks import sender
    from alfred.tokens.store import forget

    sender.cache_clear()
    fetcher.cache_clear()
    forget()


@pytest.fixture
def settings(env):
    """Give the settings the bridge reads from the test environment."""
    return runtime.settings()


@pytest.fixture
def web(env):
    """Give a Flask test client of the web process."""
    from alfred import create_app

    return create_app({"TESTING": True}).test_client()


@pytest.fixture
def celery_worker(env):
    """Run a real Celery worker (threads) in this process against the test Redis."""
    from celery.contrib.testing.worker import start_worker

    from alfred.celery_app import celery

    celery.conf.broker_url = env["REDIS_URL"]
    celery.conf.broker_connection_retry_on_startup = True
    with start_worker(
        celery,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["ingest", "outbound", "alfred"],
        loglevel="WARNING",
        shutdown_timeout=10.0,
    ) as worker:
        yield worker


def _simulator_config(webhook_url: str | None, **overrides):
    from alfred.config import Secret, Tenant
    from alfred.simulator.config import SimulatorConfig

    tenants = {
        name: Tenant(
            name,
            spec["phone_number_id"],
            spec["waba_id"],
            Secret(spec["token"]),
            mps=spec.get("mps", 80),
        )
        for name, spec in TENANTS.items()
    }
    return SimulatorConfig(
        tenants=tenants,
        webhook_url=webhook_url,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        **overrides,
    )


@pytest.fixture
def simulator(env, monkeypatch):
    """Run the project's Cloud API simulator and point the bridge's Graph client at it."""
    from alfred.simulator.testing import running_simulator

    # Windows are seeded in our database here; the looped simulator opens them end to end.
    config = _simulator_config(None, status_delay_s=0.01, enforce_window=False)
    with running_simulator(config) as handle:
        monkeypatch.setenv("GRAPH_API_URL", handle.url)
        _reset_caches()
        yield handle


@pytest.fixture
def web_server(env):
    """Serve the real web process over HTTP on a free port, in a thread."""
    import threading

    from werkzeug.serving import make_server

    from alfred import create_app

    server = make_server("127.0.0.1", 0, create_app(), threaded=True)  # the kernel picks
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def looped_simulator(env, web_server, monkeypatch):
    """Run the simulator wired both ways: Graph calls to it, its webhooks to our web server."""
    from alfred.simulator.testing import running_simulator

    config = _simulator_config(f"{web_server}/webhook", status_delay_s=0.01)
    with running_simulator(config) as handle:
        monkeypatch.setenv("GRAPH_API_URL", handle.url)
        _reset_caches()
        yield handle
