"""Stored media through the lifecycle: hot blobs copied cold and checked, then deleted."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from alfred.db import session_scope
from alfred.lifecycle.erase import erase
from alfred.models import StoredMedia
from tests.lifecycle.data import NOW, archived, hot_text


def _media_records(store) -> list[dict]:
    return [r for r in archived(store) if r.get("table") == "media"]


def _cold(store) -> dict[str, str]:
    return {k: hashlib.sha256(store.get_bytes(k)).hexdigest() for k in store.list("cold/")}


def test_day_30_moves_old_blobs_cold_checked_by_sha256(lifecycle):
    settings, store, planted, run = lifecycle
    old = {k: sha for k, (age, sha) in planted.blobs.items() if age == "old"}
    new = {k for k, (age, _) in planted.blobs.items() if age == "new"}
    assert old and new

    assert run(batch_size=2).ok

    hot = set(store.list("media/"))
    assert hot & set(old) == set()
    assert hot == new
    records = _media_records(store)
    assert sorted(r["sha256"] for r in records) == sorted(old.values())
    cold = _cold(store)
    for record in records:
        key = store.key_for(record["blob_url"])
        assert key.startswith("cold/") and cold[key] == record["sha256"]
        assert store.key_for(record["hot_url"]) in old
    assert len(cold) == len(old)
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(StoredMedia).where(StoredMedia.archive_id.is_not(None)))
        assert [(r.blob_url, r.errors) for r in rows] == [(None, None)] * len(old)


def test_a_second_run_moves_and_deletes_nothing(lifecycle, redis_client):
    settings, store, _, run = lifecycle
    run()
    before = (
        sorted(store.list("media/")),
        _cold(store),
        hot_text(settings.database_url, redis_client),
    )

    again = run()

    assert again.ok and sum(sum(r.archived.values()) for r in again.tenants.values()) == 0
    after = (
        sorted(store.list("media/")),
        _cold(store),
        hot_text(settings.database_url, redis_client),
    )
    assert after == before


def test_day_120_deletes_the_cold_copies(lifecycle):
    settings, store, planted, run = lifecycle
    run()
    old_cold = set(_cold(store))
    assert old_cold

    assert run(now=NOW + timedelta(days=settings.pii_cold_days + 1)).ok

    cold = set(_cold(store))
    assert cold & old_cold == set()
    # The newer media left the hot window by then: cold, not yet expired; no hot blob left.
    assert len(cold) == sum(1 for age, _ in planted.blobs.values() if age == "new")
    assert list(store.list("media/")) == []
    assert run(now=NOW + timedelta(days=settings.pii_hot_days + settings.pii_cold_days + 10)).ok
    assert list(store.list("cold/")) == []


@pytest.mark.parametrize("blob_store_url", ["file"], indirect=True)
def test_an_unreachable_cold_area_anonymises_no_media(lifecycle, redis_client):
    settings, store, planted, run = lifecycle
    blocked = store.root / "cold" / "home"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")

    report = run()

    assert "BlobStoreUnavailable" in report.tenants["home"].error
    home_old = {k for k, (age, _) in planted.blobs.items() if age == "old" and "/home/" in k}
    assert home_old <= set(store.list("media/"))
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(StoredMedia).where(StoredMedia.tenant_id == "home")).all()
        assert all(r.blob_url and store.key_for(r.blob_url) in planted.blobs for r in rows)
    assert [r for r in _media_records(store) if r["tenant_id"] == "home"] == []

    blocked.unlink()
    assert run().ok
    assert set(store.list("media/")) & home_old == set()
    assert sorted(r["sha256"] for r in _media_records(store) if r["tenant_id"] == "home") == sorted(
        planted.blobs[k][1] for k in home_old
    )


def test_erase_deletes_the_persons_hot_and_cold_media(lifecycle, redis_client):
    settings, store, planted, run = lifecycle
    run()
    theirs = {k for k in planted.blobs if k.endswith(("/moldhome0.jpg", "/mnewhome0.jpg"))}
    assert len(theirs) == 2 and theirs & set(store.list("media/"))

    for phone in ("+1 555 000 0000", "15550900000"):
        done = erase(settings, user=phone, store=store, client=redis_client)
        assert done["media"] == 1

    assert set(store.list("media/")) & theirs == set()
    mine = [r for r in _media_records(store) if r["media_id"] == "moldhome0"]
    assert [(r["blob_url"], r.get("hot_url")) for r in mine] == [(None, None)]
    others = [r for r in _media_records(store) if r["media_id"] != "moldhome0"]
    assert others and all(store.exists(store.key_for(r["blob_url"])) for r in others)
    assert len(_cold(store)) == len(others)
