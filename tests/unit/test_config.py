"""Settings from the environment: tenants, database URLs, versions, and secrets kept hidden."""

from __future__ import annotations

import json
import os

import pytest

from alfred.config import ConfigError, Secret, Settings, normalise_database_url

TOKEN = "EAAG-very-secret-token"


def settings(**env) -> Settings:
    return Settings.from_env({"ALFRED_VAR_DIR": "/tmp", **env})


def test_tenants_come_from_alfred_tenants_with_their_own_rates():
    s = settings(
        ALFRED_TENANTS=json.dumps(
            {
                "home": {"phone_number_id": "1", "waba_id": "10", "token": TOKEN},
                "biz": {"phone_number_id": 2, "waba_id": "20", "token": "t2", "mps": 1000},
            }
        )
    )
    assert s.tenant_by_phone_number_id("2").tenant_id == "biz"
    assert s.tenant_by_waba_id("10").tenant_id == "home"
    assert (s.tenants["home"].mps, s.tenants["biz"].mps) == (80, 1000)
    assert s.tenant_by_phone_number_id("3") is None


def test_without_alfred_tenants_one_home_tenant_comes_from_the_seed_variables():
    s = settings(META_PHONE_ID="555", META_TOKEN=TOKEN)
    assert list(s.tenants) == ["home"]
    assert s.tenants["home"].token.reveal() == TOKEN


@pytest.mark.parametrize(
    "raw, words",
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"home": {}}', "phone_number_id"),
        ('{"home": {"phone_number_id": "1", "mps": 5000}}', "mps"),
        ('{"a": {"phone_number_id": "1"}, "b": {"phone_number_id": "1"}}', "share"),
    ],
)
def test_impossible_tenant_configurations_fail_loudly(raw, words):
    with pytest.raises(ConfigError, match=words):
        settings(ALFRED_TENANTS=raw)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u:p@db:5432/x", "postgresql+psycopg://u:p@db:5432/x"),
        ("postgresql://u@db/x", "postgresql+psycopg://u@db/x"),
        ("sqlite:///var/a.db", "sqlite:///var/a.db"),
    ],
)
def test_postgres_urls_from_fly_and_supabase_are_accepted(url, expected):
    assert normalise_database_url(url) == expected


def test_the_default_database_is_sqlite_under_var():
    assert settings().database_url.startswith("sqlite:///")


def test_an_expired_graph_version_is_refused_and_the_default_is_supported():
    with pytest.raises(ConfigError, match="no longer served"):
        settings(GRAPH_API_VERSION="v18.0")
    assert settings().graph_api_version == "v25.0"
    assert settings(GRAPH_API_VERSION="24.0").graph_api_version == "v24.0"


def test_secrets_never_show_in_repr_or_str():
    s = settings(
        ALFRED_TENANTS=json.dumps({"home": {"phone_number_id": "1", "token": TOKEN}}),
        META_APP_SECRET="app-secret-value",
        META_VERIFY_TOKEN="verify-value",
        ALFRED_ENCRYPTION_KEY="key-value",
    )
    shown = repr(s) + str(s) + repr(s.tenants) + str(Secret(TOKEN)) + f"{Secret(TOKEN)}"
    for value in (TOKEN, "app-secret-value", "verify-value", "key-value"):
        assert value not in shown
    assert s.app_secrets[0] == Secret("app-secret-value")


def broker_settings(redis_url: str) -> dict:
    """Import celeryconfig in a fresh interpreter with REDIS_URL set; return the broker side."""
    import subprocess
    import sys

    from alfred.config import REPO_ROOT

    probe = (
        "import json, celeryconfig as c; from celery import Celery; app = Celery(); "
        "app.config_from_object(c); conn = app.connection_for_write(); "
        "print(json.dumps({'transport': c.broker_transport, 'ssl': repr(conn.ssl), "
        "'class': type(conn.transport).__module__, 'db': conn.virtual_host, "
        "'host': conn.hostname}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_broker_is_kombus_redis_transport_at_the_url_given():
    plain = broker_settings("redis://redis.internal:6380/3")
    assert plain == {
        "transport": "alfred.broker:Transport",
        "ssl": "False",
        "class": "alfred.broker",
        "db": "3",
        "host": "redis.internal",
    }


def test_a_rediss_url_gets_tls_with_the_certificate_verified():
    secure = broker_settings("rediss://redis.internal:6380/0")
    assert secure["ssl"] == "{'ssl_cert_reqs': <VerifyMode.CERT_REQUIRED: 2>}"


def test_job_and_sender_settings_are_read_with_their_defaults():
    s = settings()
    assert (s.meta_app_id, s.tier_limit, s.chunk_order) == (None, 1000, "accepted")
    assert (s.pii_hot_days, s.pii_cold_days) == (30, 90)
    s = settings(META_APP_ID="1234", ALFRED_TIER_LIMIT="250", ALFRED_CHUNK_ORDER="delivered",
                 PII_HOT_DAYS="7", PII_COLD_DAYS="0")  # fmt: skip
    assert (s.meta_app_id, s.tier_limit, s.chunk_order) == ("1234", 250, "delivered")
    assert (s.pii_hot_days, s.pii_cold_days) == (7, 0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PII_HOT_DAYS", "0", "PII_HOT_DAYS must be at least 1"),
        ("PII_COLD_DAYS", "-1", "PII_COLD_DAYS must be at least 0"),
        ("ALFRED_TIER_LIMIT", "many", "ALFRED_TIER_LIMIT must be a whole number"),
    ],
)
def test_a_bad_number_is_refused_with_its_name(name, value, says):
    with pytest.raises(ConfigError, match=says):
        settings(**{name: value})
