"""After a full run no secret shows in logs, metrics, task views, database, Redis or errors."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import requests
from celery.signals import before_task_publish
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import MetaData, create_engine, select

from alfred import runtime
from alfred.config import Secret
from alfred.db import session_scope
from alfred.logs import JsonFormatter
from alfred.models import TenantToken
from alfred.simulator.faults import FaultConfig
from alfred.tokens.store import save_token
from tests.conftest import APP_SECRET, PREVIOUS_APP_SECRET, TENANTS, VERIFY_TOKEN
from tests.helpers import body_of, fixture, signed_headers
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import open_window

ENCRYPTION_KEY = Fernet.generate_key().decode()
EXTRA = {
    "ALFRED_ENCRYPTION_KEY": ENCRYPTION_KEY,
    "PAGERDUTY_ROUTING_KEY": "pd-routing-key-R0UT1NG",
    "ALFRED_HASH_KEY": "pii-hash-key-H4SH",
    "FLOWER_BASIC_AUTH": "ops:flower-passw0rd",
}


def _failed(client) -> list[dict]:
    return [e for e in stream_entries(client) if e["event"] == "send_failed"]


def secrets() -> dict[str, str]:
    """Every secret of the run, by name (the parts worth hiding, never shorter than 8 chars)."""
    found = {
        "META_APP_SECRET": APP_SECRET,
        "META_APP_SECRET_PREVIOUS": PREVIOUS_APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "FLOWER_BASIC_AUTH password": EXTRA["FLOWER_BASIC_AUTH"].split(":", 1)[1],
        **{f"{t} token": spec["token"] for t, spec in TENANTS.items()},
        **{k: v for k, v in EXTRA.items() if k != "FLOWER_BASIC_AUTH"},
    }
    return found


class Capture(logging.Handler):
    """Every log line of the bridge, as the JSON formatter writes it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        if not record.name.startswith(("alfred.simulator", "werkzeug", "aiohttp")):
            self.lines.append(self.format(record))


def _database_text(url: str) -> str:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    parts = []
    with engine.connect() as connection:
        for table in meta.sorted_tables:
            for row in connection.execute(select(table)):
                parts.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(parts)


def _redis_text(client) -> str:
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        parts.append(repr(key))
        if kind == b"string":
            parts.append(repr(client.get(key)))
        elif kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == b"set":
            parts.append(repr(client.smembers(key)))
        elif kind == b"zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
        elif kind == b"stream":
            parts.append(repr(client.xrange(key)))
    return "\n".join(parts)


@pytest.fixture
def captured(monkeypatch, env):
    for name, value in EXTRA.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    published: list[str] = []

    def on_publish(headers=None, body=None, **_kwargs):
        # What Flower shows of a task: its name, argsrepr and kwargsrepr, from these headers.
        published.append(repr(headers) + repr(body))

    before_task_publish.connect(on_publish, weak=False)
    yield handler.lines, published
    before_task_publish.disconnect(on_publish)
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_no_secret_is_visible_anywhere_after_a_full_run(
    captured, looped_simulator, celery_worker, web_server, env, redis_client
):
    from alfred.tasks import send_message

    lines, published = captured
    answers: list[str] = []
    settings = runtime.settings()
    # A token saved as rotation saves it: kept encrypted, and the one the sends use from now on.
    with session_scope(settings.database_url) as session:
        token = Secret(TENANTS["home"]["token"])
        save_token(session, settings, tenant_id="home", token=token, expires_at=None)

    # Inbound: good, forged, and a handshake with the wrong token.
    body = body_of(fixture("text"))
    for headers in (signed_headers(body, APP_SECRET), signed_headers(body, "forged")):
        answers.append(requests.post(f"{web_server}/webhook", data=body, headers=headers).text)
    bad = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    answers.append(requests.get(f"{web_server}/webhook", params=bad).text)
    answers.append(requests.get(f"{web_server}/readyz").text)

    # Outbound: both tenants, one refused by Meta, one invalid, one through a timeout.
    for tenant in ("home", "biz"):
        open_window(env["DATABASE_URL"], tenant, "447700900123")
    keys = []
    for tenant in ("home", "biz"):
        key = uuid.uuid4().hex
        keys.append(key)
        send_message.delay(
            {"tenant_id": tenant, "to": "+447700900123", "type": "text", "text": {"body": "hi"},
             "idempotency_key": key}
        )  # fmt: skip
    wait_for(lambda: {m["key"] for m in looped_simulator.state.messages()} >= set(keys), 30)
    send_message.delay({"tenant_id": "home", "to": "nobody", "type": "text"})
    looped_simulator.state.set_faults(FaultConfig(error_rates={131026: 1.0}))
    send_message.delay(
        {"tenant_id": "biz", "to": "+447700900124", "type": "text", "text": {"body": "x"},
         "idempotency_key": "refused"}
    )  # fmt: skip
    wait_for(lambda: len(_failed(redis_client)) >= 2, 30)
    time.sleep(1)  # the status webhooks of the sends come back meanwhile

    places = {
        "logs": "\n".join(lines),
        "metrics": generate_latest(REGISTRY).decode(),
        "task messages (Flower's view)": "\n".join(published),
        "database": _database_text(env["DATABASE_URL"]),
        "redis": _redis_text(redis_client),
        "error answers": "\n".join(answers),
    }
    assert all(places.values()), [k for k, v in places.items() if not v]
    leaks = [
        (name, place)
        for name, value in secrets().items()
        for place, text in places.items()
        if value in text
    ]
    assert leaks == []
    # The saved token is in the database, as ciphertext only.
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(TenantToken.tenant_id)) == "home"
