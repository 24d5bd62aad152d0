"""The PII lifecycle with a moved clock, on SQLite and PostgreSQL, a folder and an S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from alfred import runtime
from alfred.blobstore import store_for
from alfred.config import REPO_ROOT
from alfred.db import session_scope
from alfred.lifecycle import service
from alfred.lifecycle.erase import erase
from alfred.models import Message
from alfred.streams import OUTBOUND_GROUP, OUTBOX_STREAM
from tests.lifecycle.data import NOW, archived, counts, hot_text, seed, sqlite_file_text


def _record_ids(records: list[dict]) -> Counter:
    return Counter(
        (r.get("table") or r.get("stream"), r.get("id") or r.get("user_key")) for r in records
    )


def test_day_30_archives_every_old_record_then_anonymises_the_hot_copy(lifecycle, redis_client):
    settings, store, planted, run = lifecycle
    before = counts(settings.database_url)

    report = run(batch_size=2)

    assert report.ok, report.tenants
    hot = hot_text(settings.database_url, redis_client)
    cold = repr(archived(store))
    assert [s for s in planted.old if s in hot] == []
    assert [s for s in planted.old if s not in cold] == []
    assert [s for s in planted.new if s not in hot] == []
    assert [s for s in planted.new if s in cold] == []
    # Rows stay (windows go): counts per tenant and table are what they were.
    assert counts(settings.database_url) == before
    if settings.database_url.startswith("sqlite"):
        raw = sqlite_file_text(settings.database_url)
        assert [s for s in planted.old if s in raw] == []
    # Each record in exactly one archive.
    assert max(_record_ids(archived(store)).values()) == 1


def test_a_second_run_changes_nothing(lifecycle, redis_client):
    settings, store, _, run = lifecycle
    run()
    hot, keys = hot_text(settings.database_url, redis_client), sorted(store.list("archive/"))
    blobs = [store.get_bytes(k) for k in keys]

    again = run()

    assert sum(sum(r.archived.values()) for r in again.tenants.values()) == 0
    assert hot_text(settings.database_url, redis_client) == hot
    assert sorted(store.list("archive/")) == keys
    assert [store.get_bytes(k) for k in keys] == blobs


def test_day_120_deletes_the_cold_archives_of_old_records(lifecycle, redis_client):
    settings, store, planted, run = lifecycle
    run()
    assert [s for s in planted.old if s not in repr(archived(store))] == []

    report = run(now=NOW + timedelta(days=settings.pii_cold_days + 1))

    assert report.ok
    cold = repr(archived(store))
    assert [s for s in planted.old if s in cold] == []
    # The newer records have left the hot window by then: archived, not yet expired.
    assert [s for s in planted.new if s not in cold] == []
    assert [s for s in planted.new if s in hot_text(settings.database_url, redis_client)] == []


def test_dry_run_reports_and_changes_nothing(lifecycle, redis_client):
    settings, store, _, run = lifecycle
    hot = hot_text(settings.database_url, redis_client)

    report = run(dry_run=True)

    assert report.tenants["home"].archived["messages"] == 6
    assert report.tenants["biz"].archived["ingest_stream"] == 3
    assert hot_text(settings.database_url, redis_client) == hot
    assert list(store.list("archive/")) == []


@pytest.mark.parametrize("blob_store_url", ["file"], indirect=True)
def test_an_unreachable_store_stops_that_tenant_and_anonymises_nothing_unarchived(
    lifecycle, redis_client, tmp_path
):
    settings, store, planted, run = lifecycle
    # The home tenant's folder cannot be made: its archives cannot be written.
    blocked = store.root / "archive" / "home"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")

    report = run()

    assert "BlobStoreUnavailable" in report.tenants["home"].error
    assert report.tenants["biz"].error is None
    hot = hot_text(settings.database_url, redis_client)
    home_old = [s for s in planted.old if "home" in s]
    assert [s for s in home_old if s not in hot] == []
    assert [s for s in planted.old if "biz" in s and s in hot] == []

    blocked.unlink()
    assert run().ok
    hot = hot_text(settings.database_url, redis_client)
    assert [s for s in planted.old if s in hot] == []
    assert [s for s in planted.old if s not in repr(archived(store))] == []
    assert max(_record_ids(archived(store)).values()) == 1


class Stop(Exception):
    pass


@pytest.mark.parametrize("corrupt", ["truncate", "garble", "delete"])
def test_a_corrupt_archive_is_detected_and_rewritten(lifecycle, redis_client, corrupt):
    settings, store, planted, run = lifecycle

    def stop_after_first_archive(step):
        if step == "verified":
            raise Stop

    report = run(step=stop_after_first_archive, tenant="home")
    assert "Stop" in report.tenants["home"].error
    [key] = list(store.list("archive/"))
    data = store.get_bytes(key)
    if corrupt == "delete":
        store.delete(key)
    else:
        store.put_bytes(key, data[: len(data) // 2] if corrupt == "truncate" else data[::-1])

    assert run().ok

    assert store.get_bytes(key) == data
    assert [s for s in planted.old if s not in repr(archived(store))] == []
    assert [s for s in planted.old if s in hot_text(settings.database_url, redis_client)] == []
    assert max(_record_ids(archived(store)).values()) == 1


@pytest.mark.parametrize("step", ["claimed", "verified", "done"])
def test_a_run_killed_mid_batch_resumes_and_archives_each_record_once(
    blob_store_url, env, redis_client, step
):
    settings = runtime.settings()
    store = store_for(settings)
    planted = seed(settings.database_url, redis_client, per_tenant=8, store=store)
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    killed = subprocess.run(
        [sys.executable, "-m", "tests.lifecycle.killed_run", step, "4", NOW.isoformat(), "3"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    report = service.run(settings, store=store, client=redis_client, now=NOW, batch_size=3)
    assert report.ok, report.tenants
    records = archived(store)
    assert max(_record_ids(records).values()) == 1
    assert [s for s in planted.old if s not in repr(records)] == []
    assert [s for s in planted.old if s in hot_text(settings.database_url, redis_client)] == []


def test_erase_removes_one_person_from_hot_stores_and_cold_archives(lifecycle, redis_client):
    settings, store, planted, run = lifecycle
    run()
    before = counts(settings.database_url)
    # One person past the hot window (archived), one inside it (hot only).
    gone = planted.people["oldhome0"] + planted.people["newhome0"]
    kept = [s for s in planted.old + planted.new if s not in gone]

    for phone in ("+1 555 000 0000", "15550900000"):
        done = erase(settings, user=phone, store=store, client=redis_client)
        assert done["messages"] == 2

    hot = hot_text(settings.database_url, redis_client)
    cold = repr(archived(store))
    assert [s for s in gone if s in hot or s in cold] == []
    assert [s for s in kept if s not in hot and s not in cold] == []
    windows = before.pop("customer_windows", None)
    assert windows is None and counts(settings.database_url) == before


def test_acknowledged_outbox_entries_go_once_their_message_was_sent(lifecycle, redis_client):
    settings, _, _, run = lifecycle
    with session_scope(settings.database_url) as session:
        for key, status in (("o-sent", "accepted"), ("o-queued", "queued")):
            session.add(Message(tenant_id="home", direction="outbound", idempotency_key=key,
                                type="text", status=status, body="hi"))  # fmt: skip
    ids = {
        key: redis_client.xadd(OUTBOX_STREAM, {"payload": json.dumps(
            {"tenant_id": "home", "to": "1", "idempotency_key": key})}).decode()
        for key in ("o-sent", "o-queued", "o-pending")
    }  # fmt: skip
    read = redis_client.xreadgroup(OUTBOUND_GROUP, "c1", {OUTBOX_STREAM: ">"})
    assert len(read[0][1]) == 3
    redis_client.xack(OUTBOX_STREAM, OUTBOUND_GROUP, ids["o-sent"], ids["o-queued"])
    with session_scope(settings.database_url) as session:
        session.add(Message(tenant_id="home", direction="outbound", idempotency_key="o-pending",
                            type="text", status="accepted", body="hi"))  # fmt: skip

    report = run()

    assert report.tenants["home"].outbox_sent_deleted == 1
    left = {i.decode() for i, _ in redis_client.xrange(OUTBOX_STREAM)}
    assert ids["o-sent"] not in left
    assert {ids["o-queued"], ids["o-pending"]} <= left


@pytest.mark.parametrize("blob_store_url", ["file"], indirect=True)
def test_the_beat_task_runs_the_lifecycle_in_a_worker(
    blob_store_url, env, redis_client, celery_worker
):
    from alfred.lifecycle.tasks import pii_lifecycle

    settings = runtime.settings()
    # The worker's clock is the real one: plant data old by today's.
    planted = seed(settings.database_url, redis_client, now=datetime.now(UTC))

    pii_lifecycle.delay()

    deadline = time.monotonic() + 60
    while [s for s in planted.old if s in hot_text(settings.database_url, redis_client)]:
        assert time.monotonic() < deadline, "the task did not anonymise the old records"
        time.sleep(0.2)
    assert [s for s in planted.old if s not in repr(archived(store_for(settings)))] == []
    assert [s for s in planted.new if s not in hot_text(settings.database_url, redis_client)] == []
