"""Token rotation against the simulator's token endpoints, on both databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import select

from alfred import metrics, runtime
from alfred.config import ConfigError, Settings
from alfred.db import session_scope
from alfred.models import TenantToken
from alfred.tokens import store
from alfred.tokens.rotation import Rotator, rotate_tokens
from alfred.tokens.store import current_token, forget
from alfred.tokens.suspect import mark_suspect, suspect_since
from alfred.tokens.tasks import rotate_tokens_task, schedule_slot
from alfred.whatsapp.graph import GraphClient
from tests.conftest import ENCRYPTION_KEY


def rows(settings) -> list[TenantToken]:
    with session_scope(settings.database_url) as session:
        found = session.scalars(select(TenantToken).order_by(TenantToken.id)).all()
        for row in found:
            session.expunge(row)
        return list(found)


def sim_post(simulator, path: str, body: dict) -> dict:
    r = requests.post(f"{simulator.url}{path}", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_tenant_is_exchanged_verified_and_swapped_in(simulator, settings, redis_client):
    settings = runtime.settings()
    mark_suspect(redis_client, "home")
    results = {r.tenant_id: r for r in rotate_tokens(settings, redis_client)}
    assert {t: r.outcome for t, r in results.items()} == {"home": "rotated", "biz": "rotated"}
    days = (results["home"].expires_at - datetime.now(UTC)).total_seconds() / 86400
    assert 59.9 < days <= 60  # Meta's 60-day token, from debug_token's expires_at
    stored = rows(settings)
    assert [(r.tenant_id, r.active) for r in stored] == [("home", True), ("biz", True)]
    assert all(r.verified_at is not None for r in stored)
    home = settings.tenants["home"]
    new = current_token(home, settings)
    assert new != home.token and new.reveal().encode() not in stored[0].token_encrypted
    assert suspect_since(redis_client, "home") is None  # trusted again
    gauge = metrics.TOKEN_EXPIRY.labels("home")._value.get()
    assert abs(gauge - results["home"].expires_at.timestamp()) < 1
    # The new token sends.
    graph = GraphClient(settings.graph_api_url, settings.graph_api_version)
    body = {"messaging_product": "whatsapp", "to": "+14155550100", "type": "text",
            "text": {"body": "hi"}}  # fmt: skip
    assert graph.send_message(home.phone_number_id, new, body).wamid.startswith("wamid.")


def test_an_exchange_answering_190_keeps_the_old_token(simulator, settings, redis_client):
    settings = runtime.settings()
    sim_post(simulator, "/_sim/tokens/expire", {"tenant": "home"})
    results = {r.tenant_id: r for r in rotate_tokens(settings, redis_client)}
    assert results["home"].outcome == "failed"
    assert results["home"].reason == "exchange_refused" and results["home"].retryable
    assert "190" in results["home"].error
    assert results["biz"].outcome == "rotated"  # one tenant's failure stops no other
    assert [r.tenant_id for r in rows(settings)] == ["biz"]
    assert current_token(settings.tenants["home"], settings) == settings.tenants["home"].token


@pytest.mark.parametrize(
    ("fault", "reason", "retryable"),
    [("invalid_next", "token_invalid", True), ("no_scope_next", "missing_scope", False)],
)
def test_a_new_token_debug_token_does_not_vouch_for_is_never_stored(
    simulator, settings, redis_client, fault, reason, retryable
):
    settings = runtime.settings()
    sim_post(simulator, "/_sim/tokens/faults", {fault: 1})
    home = settings.tenants["home"]
    result = Rotator(settings, redis_client).rotate(home)
    assert (result.outcome, result.reason, result.retryable) == ("failed", reason, retryable)
    assert rows(settings) == []
    assert current_token(home, settings) == home.token
    # The fault spent, the retry succeeds.
    assert Rotator(settings, redis_client).rotate(home).outcome == "rotated"


def test_two_beats_firing_at_once_rotate_each_token_once(simulator, settings, redis_client):
    settings = runtime.settings()
    barrier = threading.Barrier(4)
    answers: list[dict] = []

    def beat() -> None:
        barrier.wait()
        answers.append(rotate_tokens_task.run(reason="schedule"))

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a["home"] for a in answers).count("rotated") == 1
    assert sorted(a["biz"] for a in answers).count("rotated") == 1
    assert sim_post(simulator, "/_sim/tokens/faults", {})["exchanges"] == 2
    # The hourly catch-up of the same week finds it done.
    metrics.TOKEN_EXPIRY.labels("biz").set(0)
    assert rotate_tokens_task.run(reason="catch_up") == {"home": "skipped", "biz": "skipped"}
    assert len(rows(settings)) == 2
    # ... and sets the expiry gauge from the stored token.
    expires = next(r.expires_at for r in rows(settings) if r.tenant_id == "biz")
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert abs(metrics.TOKEN_EXPIRY.labels("biz")._value.get() - expires.timestamp()) < 1


def test_the_weekly_slot_is_the_last_monday_at_three():
    monday = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert schedule_slot(monday) == "2026-11-30"
    assert schedule_slot(datetime(2026, 12, 6, 23, 59, tzinfo=UTC)) == "2026-11-30"
    assert schedule_slot(datetime(2026, 11, 30, 2, 59, tzinfo=UTC)) == "2026-11-23"


def test_the_key_rotates_with_multifernet_and_rotate_key(
    simulator, settings, redis_client, monkeypatch
):
    settings = runtime.settings()
    home = settings.tenants["home"]
    assert Rotator(settings, redis_client).rotate(home).outcome == "rotated"
    token = current_token(home, settings)
    newer = Fernet.generate_key().decode()
    monkeypatch.setenv("ALFRED_ENCRYPTION_KEY", f"{newer},{ENCRYPTION_KEY}")
    runtime.reset()
    forget()
    both = runtime.settings()
    assert current_token(home, both) == token  # the old key still reads it
    assert store.reencrypt_all(both) == 1
    monkeypatch.setenv("ALFRED_ENCRYPTION_KEY", newer)  # the old key is dropped
    runtime.reset()
    forget()
    assert current_token(home, runtime.settings()) == token
    monkeypatch.setenv("ALFRED_ENCRYPTION_KEY", Fernet.generate_key().decode())
    runtime.reset()
    forget()
    with pytest.raises(store.TokenKeyError, match="rotate-key"):
        current_token(home, runtime.settings())


def test_a_server_database_without_a_key_refuses_to_start(postgresql_url, tmp_path):
    # The lifecycle's hash key is required with a server database too; given here, so that the
    # refusal seen is the encryption key's.
    settings = Settings.from_env(
        {
            "DATABASE_URL": postgresql_url,
            "ALFRED_VAR_DIR": str(tmp_path),
            "PII_HASH_KEY": "k" * 32,
        }
    )
    with pytest.raises(ConfigError, match="ALFRED_ENCRYPTION_KEY is not set"):
        store.check_key(settings)
    local = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    store.check_key(local)  # SQLite alone may use the dev key file


def test_a_failed_rotation_is_tried_again_later_for_that_tenant_alone(
    simulator, settings, redis_client
):
    from tests.helpers import task_arguments

    sim_post(simulator, "/_sim/tokens/expire", {"tenant": "home"})
    assert rotate_tokens_task.run(reason="expired") == {"home": "failed", "biz": "rotated"}
    queued = [task_arguments(raw) for raw in redis_client.lrange("alfred", 0, -1)]
    retries = [kwargs for _, kwargs in queued if kwargs.get("tenant") == "home"]
    assert retries == [{"tenant": "home", "reason": "expired", "slot": None, "attempt": 2}]
    assert metrics.TOKEN_ROTATIONS.labels("home", "failed")._value.get() >= 1


def test_the_web_process_refuses_to_start_without_a_key_on_postgresql(
    env, postgresql_url, monkeypatch
):
    from alfred import create_app

    monkeypatch.setenv("DATABASE_URL", postgresql_url)
    monkeypatch.delenv("ALFRED_ENCRYPTION_KEY")
    runtime.reset()
    with pytest.raises(ConfigError, match="a server database needs one key"):
        create_app({"TESTING": True})


def test_rotate_tokens_on_the_command_line_names_a_failure_and_exits_1(env, simulator):
    from tests.integration.test_cli import alfred

    sim_post(simulator, "/_sim/tokens/expire", {"tenant": "home"})
    done = alfred("rotate-tokens", "--tenant", "home", env=env,
                  extra={"GRAPH_API_URL": simulator.url})  # fmt: skip
    assert done.returncode == 1
    assert "home: failed: exchange_refused" in done.stdout
    assert "home-token-s3cret" not in done.stdout + done.stderr
