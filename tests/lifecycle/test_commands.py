"""`python -m alfred anonymise` and `erase`, as real subprocesses, with a moved clock."""

from __future__ import annotations

from alfred import runtime
from alfred.blobstore import store_for
from tests.integration.test_cli import alfred
from tests.lifecycle.data import NOW, archived, hot_text, seed


def test_anonymise_by_hand_dry_then_for_real_then_nothing_left(blob_store_url, env, redis_client):
    settings = runtime.settings()
    planted = seed(settings.database_url, redis_client)
    env = {**env, "BLOB_STORE_URL": blob_store_url}
    hot = hot_text(settings.database_url, redis_client)

    dry = alfred("anonymise", "--dry-run", "--now", NOW.isoformat(), env=env)
    assert dry.returncode == 0, dry.stderr
    assert "home: would archive 24 records (customer_windows 3, ingest_stream 3" in dry.stdout
    assert hot_text(settings.database_url, redis_client) == hot

    done = alfred("anonymise", "--now", NOW.isoformat(), "--tenant", "home", env=env)
    assert done.returncode == 0, done.stderr
    assert "home: archive 24 records" in done.stdout and "biz" not in done.stdout
    everything = alfred("anonymise", "--now", NOW.isoformat(), env=env)
    assert "biz: archive 24 records" in everything.stdout
    assert "home: archive 0 records" in everything.stdout
    assert [s for s in planted.old if s in hot_text(settings.database_url, redis_client)] == []
    assert [s for s in planted.old if s not in repr(archived(store_for(settings)))] == []

    bad = alfred("anonymise", "--now", "yesterday", env=env)
    assert bad.returncode == 2 and "not an ISO-8601 time" in bad.stderr


def test_erase_by_hand(blob_store_url, env, redis_client):
    settings = runtime.settings()
    planted = seed(settings.database_url, redis_client)
    env = {**env, "BLOB_STORE_URL": blob_store_url}
    person = planted.people["newbiz1"]

    done = alfred("erase", "--user", person[0], env=env)

    assert done.returncode == 0, done.stderr
    assert "messages: erased 2" in done.stdout
    hot = hot_text(settings.database_url, redis_client)
    assert [s for s in person if s in hot] == []
    assert planted.people["newbiz2"][1] in hot
