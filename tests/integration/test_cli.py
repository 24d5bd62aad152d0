"""`python -m alfred …` run as a real subprocess against the test Redis and both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import redis
from sqlalchemy import select, update

from alfred.config import REPO_ROOT
from alfred.db import session_scope
from alfred.ingest.service import ingest_body
from alfred.messages import audit
from alfred.models import Message, QuarantinedEvent, TenantToken
from alfred.streams import INGEST_STREAM
from tests.helpers import body_of, fixture

COMMANDS = ("db", "send", "smoke", "simulator", "outbox", "dlq", "quarantine", "rotate-tokens",
            "anonymise", "erase")  # fmt: skip


def alfred(*args: str, env: dict | None = None, extra: dict | None = None, timeout: float = 60):
    """Run `python -m alfred ARGS` from the repository root; return the finished process."""
    environ = {**os.environ, **(env or {}), **(extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "alfred", *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def queue_redis(redis_url):
    """Give the task queue on this run's own Redis database, emptied, where no worker runs now.

    Not a fixed index of its own: that index is another run's TEST_REDIS_URL on a shared
    machine, whose workers would consume what we count (and which our flush would empty).
    This suite's workers run only inside the tests that start them, so none takes from it here.
    """
    url = redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield {"REDIS_URL": url}, client
    client.flushdb()


def test_help_lists_every_command():
    done = alfred("--help")
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout


def test_db_upgrade_creates_a_new_sqlite_database(tmp_path):
    path = tmp_path / "new" / "alfred.db"
    path.parent.mkdir()
    done = alfred("db", "upgrade", extra={"DATABASE_URL": f"sqlite:///{path}"})
    assert done.returncode == 0, done.stderr
    assert "(head)" in done.stdout
    assert path.exists()
    again = alfred("db", "upgrade", extra={"DATABASE_URL": f"sqlite:///{path}"})
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--to", "12"], "invalid_recipient"),
        ([], "missing_recipient"),
        (["--to", "+14155550100", "--tenant", "nobody"], "unknown tenant 'nobody'"),
    ],
)
def test_send_refuses_an_invalid_message_with_exit_2_and_the_reason(
    env, redis_client, args, reason
):
    done = alfred("send", "--text", "hi", *args, env=env)
    assert done.returncode == 2
    assert reason in done.stderr
    assert redis_client.llen("outbound") == 0


def test_send_enqueues_and_prints_the_idempotency_key(env, queue_redis):
    extra, queue = queue_redis
    done = alfred("send", "--to", "+14155550100", "--text", "hi", "--key", "op-1", env=env,
                  extra=extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "op-1" in done.stdout
    assert queue.llen("outbound") == 1


def test_quarantine_list_and_replay_a_stale_event(env, settings, redis_client):
    stale = int(time.time()) - 3600
    outcome = ingest_body(
        body_of(fixture("text", now=stale)),
        received_at=time.time(),
        settings=settings,
        client=redis_client,
    )
    assert len(outcome.quarantined) == 1
    with session_scope(settings.database_url) as session:
        event_id = session.scalar(select(QuarantinedEvent.id))

    listed = alfred("quarantine", "list", "--reason", "stale_timestamp", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "stale_timestamp" in listed.stdout and str(event_id) in listed.stdout

    replayed = alfred("quarantine", "replay", str(event_id), env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"{event_id}: appended" in replayed.stdout
    assert redis_client.xlen(INGEST_STREAM) == 1

    assert "no quarantined events" in alfred("quarantine", "list", env=env).stdout
    assert "appended" in alfred("quarantine", "list", "--all", env=env).stdout
    again = alfred("quarantine", "replay", str(event_id), env=env)
    assert "already replayed" in again.stdout
    assert alfred("quarantine", "replay", env=env).returncode == 2  # neither ID nor --all


def _dead_letter(settings, key: str) -> None:
    message = {
        "tenant_id": "home",
        "to": "+14155550100",
        "type": "text",
        "text": {"body": "hello"},
        "idempotency_key": key,
        "enqueued_at": time.time(),
    }
    with session_scope(settings.database_url) as session:
        audit.mark_failed(
            session,
            "home",
            message,
            reason="meta_unavailable",
            errors=[{"code": 131000, "message": "Something went wrong"}],
            status="dead_lettered",
        )
        session.execute(update(Message).where(Message.idempotency_key == key).values(attempts=8))


def test_dlq_list_and_replay_re_enqueue_with_fresh_attempts(env, settings, queue_redis):
    extra, queue = queue_redis
    _dead_letter(settings, "dead-1")
    listed = alfred("dlq", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "dead-1" in listed.stdout and "meta_unavailable" in listed.stdout
    assert "131000" in listed.stdout and "+14155550100" in listed.stdout

    replayed = alfred("dlq", "replay", "dead-1", env=env, extra=extra)
    assert replayed.returncode == 0, replayed.stderr
    assert "home/dead-1: re-enqueued" in replayed.stdout
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(Message).where(Message.idempotency_key == "dead-1"))
        assert (row.status, row.attempts) == ("queued", 0)
    assert queue.llen("outbound") == 1
    assert "no dead-lettered messages" in alfred("dlq", "list", env=env).stdout
    missing = alfred("dlq", "replay", "dead-1", env=env)
    assert missing.returncode == 1 and "no dead-lettered message" in missing.stderr


@pytest.fixture
def simulator(env):
    """Serve the Cloud API simulator with the test tenants, sending no webhooks."""
    from alfred.simulator.config import SimulatorConfig
    from alfred.simulator.testing import running_simulator

    config = replace(SimulatorConfig.from_env(), webhook_url=None)
    with running_simulator(config) as handle:
        yield handle


def test_smoke_sends_hello_world_and_prints_the_wamid(env, simulator):
    done = alfred("smoke", "--to", "+14155550100", env=env, extra={"GRAPH_API_URL": simulator.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: sent" in done.stdout and "wamid: wamid." in done.stdout


def test_smoke_prints_metas_error_and_exits_1(env, simulator):
    bad = {"GRAPH_API_URL": simulator.url, "ALFRED_TENANTS": env["ALFRED_TENANTS"].replace(
        "home-token-s3cret", "not-a-token")}  # fmt: skip
    done = alfred("smoke", "--to", "+14155550100", env=env, extra=bad)
    assert done.returncode == 1
    assert "Meta's error: 190" in done.stdout
    assert "not-a-token" not in done.stdout + done.stderr


def test_rotate_tokens_stores_a_new_token_per_tenant(env, settings, simulator):
    extra = {"GRAPH_API_URL": simulator.url, "META_APP_ID": simulator.config.app_id}
    done = alfred("rotate-tokens", env=env, extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "home: rotated, expires" in done.stdout and "biz: rotated, expires" in done.stdout
    assert "EAA" not in done.stdout + done.stderr  # never print a token
    with session_scope(settings.database_url) as session:
        assert len(session.scalars(select(TenantToken)).all()) == 2
    # The stored token is the one now in use: sending with it works.
    smoke = alfred("smoke", "--to", "+14155550100", env=env, extra=extra)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr


def test_rotate_tokens_reports_each_failure_and_goes_on(env, simulator):
    extra = {"GRAPH_API_URL": simulator.url, "META_APP_ID": "wrong-app"}
    done = alfred("rotate-tokens", env=env, extra=extra)
    assert done.returncode == 1
    assert "home: failed" in done.stdout and "biz: failed" in done.stdout
    assert alfred("rotate-tokens", env={**env, "META_APP_ID": ""}).returncode == 2
