"""Inbound media: simulator → bridge → blob store (a folder, then moto's S3) → «alfred-ingest»."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import requests
from sqlalchemy import select

from alfred import runtime
from alfred.blobstore import open_store
from alfred.db import session_scope
from alfred.media import service
from alfred.media.service import MediaFetcher, MediaJob
from alfred.models import StoredMedia
from alfred.whatsapp.graph import GraphClient
from tests.integration.test_ingest_pipeline import stream_entries, wait_for


def make_media(sim_url: str, **spec) -> dict:
    """Have the simulator hold media a user sent; return its id, type, hash and size."""
    r = requests.post(f"{sim_url}/_sim/media", json={"tenant": "home", **spec}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def media_faults(sim_url: str, **faults) -> dict:
    """Spoil the simulator's next downloads (see alfred/simulator/media.py)."""
    return requests.post(f"{sim_url}/_sim/media/faults", json=faults, timeout=10).json()


def events(client, name: str) -> list[dict]:
    return [e["envelope"] for e in stream_entries(client) if e["event"] == name]


def row(database_url: str, media_id: str) -> StoredMedia | None:
    with session_scope(database_url) as session:
        found = session.scalar(select(StoredMedia).where(StoredMedia.media_id == media_id))
        if found is not None:
            session.expunge(found)
        return found


def job_for(media: dict, kind: str = "image", message_id: str = "wamid.M1") -> MediaJob:
    raw = {"id": media["id"], "mime_type": media["mime_type"], "sha256": media["sha256"]}
    return MediaJob("home", "110000000000001", message_id, media["id"], kind, 1764547200, raw)


@pytest.fixture
def fetcher(blob_store_url, settings, redis_client, simulator, monkeypatch):
    """A fetcher against the real simulator, Redis, database and store, retrying fast."""
    monkeypatch.setattr(service, "MAX_ATTEMPTS", 3)
    settings = runtime.settings()
    return MediaFetcher(
        settings=settings,
        client=redis_client,
        store=open_store(settings.blob_store_url, endpoint_url=settings.s3_endpoint_url),
        graph=GraphClient(settings.graph_api_url, settings.graph_api_version),
    )


def test_an_inbound_image_is_stored_and_announced_once_and_never_downloaded_twice(
    blob_store_url, looped_simulator, celery_worker, redis_client, database_url
):
    data = os.urandom(300_000)
    media = make_media(looped_simulator.url, data=data.hex(), mime_type="image/jpeg")
    inbound = {"tenant": "home", "from": "+14155550100", "type": "image",
               "image": {"id": media["id"], "mime_type": "image/jpeg", "sha256": media["sha256"]},
               "caption": "our new sofa"}  # fmt: skip
    r = requests.post(f"{looped_simulator.url}/_sim/inbound", json=inbound, timeout=10)
    wamid = r.json()["wamid"]
    stored = wait_for(lambda: events(redis_client, "media_stored"), timeout=30)[0]
    message = events(redis_client, "message")[0]
    assert message["id"] == wamid and message["image"]["id"] == media["id"]
    assert stored["id"] == f"media:{media['id']}"
    assert stored["message_id"] == wamid and stored["media_id"] == media["id"]
    assert stored["mime_type"] == "image/jpeg" and stored["bytes"] == len(data.hex())
    assert stored["sha256"] == hashlib.sha256(data.hex().encode()).hexdigest() == media["sha256"]
    assert stored["blob_url"].startswith(blob_store_url)
    assert "our new sofa" not in stored["blob_url"] and "14155550100" not in stored["blob_url"]
    settings = runtime.settings()
    store = open_store(settings.blob_store_url, endpoint_url=settings.s3_endpoint_url)
    assert store.get_bytes(store.key_for(stored["blob_url"])) == data.hex().encode()
    assert row(database_url, media["id"]).status == "stored"
    # Meta delivers the same webhook again: no second download, no second envelope.
    again = requests.post(
        f"{looped_simulator.url}/_sim/inbound", json={**inbound, "id": wamid}, timeout=10
    )
    assert again.status_code == 200
    wait_for(lambda: media_faults(looped_simulator.url)["downloads"] == 1)
    journal = service.media_journal(redis_client)
    wait_for(lambda: journal.size() == 0)
    assert len(events(redis_client, "media_stored")) == 1
    assert media_faults(looped_simulator.url)["downloads"] == 1


def test_a_media_id_meta_no_longer_knows_fails_at_once_with_the_reason(fetcher, redis_client):
    fake = {"id": "999999999", "mime_type": "image/jpeg", "sha256": "0" * 64}
    outcome = fetcher.fetch(job_for(fake))
    assert (outcome.status, outcome.reason) == ("failed", "unknown_media")
    failed = events(redis_client, "media_failed")
    assert [f["errors"][0]["reason"] for f in failed] == ["unknown_media"]
    assert failed[0]["id"] == "media:999999999" and failed[0]["message_id"] == "wamid.M1"
    assert fetcher.fetch(job_for(fake)).status == "already"
    assert len(events(redis_client, "media_failed")) == 1


def test_media_over_the_types_limit_is_refused_without_a_byte_stored(
    fetcher, simulator, redis_client, database_url
):
    media = make_media(simulator.url, size=600 * 1024, mime_type="image/webp")
    outcome = fetcher.fetch(job_for(media, kind="sticker"))
    assert (outcome.status, outcome.reason) == ("failed", "too_large")
    assert list(fetcher.store.list("media/")) == []
    assert media_faults(simulator.url)["downloads"] == 0
    assert row(database_url, media["id"]).reason == "too_large"


def test_a_cut_short_download_is_retried_and_then_stored(fetcher, simulator, redis_client):
    media = make_media(simulator.url, size=2 * 1024 * 1024, mime_type="video/mp4")
    media_faults(simulator.url, cut_next=1)
    first = fetcher.fetch(job_for(media, kind="video"))
    assert (first.status, first.reason) == ("retry", "download_incomplete")
    assert list(fetcher.store.list("media/")) == []
    assert events(redis_client, "media_stored") == []
    assert fetcher.fetch(job_for(media, kind="video")).status == "stored"
    assert len(events(redis_client, "media_stored")) == 1


def test_downloads_cut_short_every_time_end_in_media_failed(fetcher, simulator, redis_client):
    media = make_media(simulator.url, size=1024 * 1024, mime_type="audio/ogg")
    media_faults(simulator.url, cut_next=10)
    outcomes = [fetcher.fetch(job_for(media, kind="audio")).status for _ in range(3)]
    assert outcomes == ["retry", "retry", "failed"]
    failed = events(redis_client, "media_failed")
    assert [f["errors"][0]["reason"] for f in failed] == ["download_incomplete"]
    assert list(fetcher.store.list("media/")) == []


def test_a_hash_mismatch_stores_nothing_and_fails_after_the_retries(
    fetcher, simulator, redis_client
):
    media = make_media(simulator.url, size=100_000, mime_type="application/pdf")
    media_faults(simulator.url, corrupt_next=10)
    outcomes = [fetcher.fetch(job_for(media, kind="document")) for _ in range(3)]
    assert [o.reason for o in outcomes] == ["hash_mismatch"] * 3
    assert outcomes[-1].status == "failed"
    assert list(fetcher.store.list("media/")) == []
    assert events(redis_client, "media_failed")[0]["errors"][0]["reason"] == "hash_mismatch"


def test_an_expired_url_is_resolved_again_from_the_media_id(fetcher, simulator, redis_client):
    media = make_media(simulator.url, size=5000, mime_type="image/png")
    media_faults(simulator.url, expire_next=1)
    assert fetcher.fetch(job_for(media)).status == "stored"
    assert media_faults(simulator.url)["downloads"] == 1


def test_an_unreachable_store_retries_keeps_the_message_and_stores_once_it_is_back(
    env, simulator, redis_client, celery_worker, tmp_path, monkeypatch, database_url
):
    blocker = tmp_path / "store-down"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("BLOB_STORE_URL", blocker.as_uri())
    monkeypatch.setattr(service, "RETRY_BASE_S", 0.2)
    runtime.reset()
    from alfred.media.tasks import fetcher as cached_fetcher
    from alfred.media.tasks import publish_fetches

    cached_fetcher.cache_clear()
    media = make_media(simulator.url, size=10_000, mime_type="image/jpeg")
    job = job_for(media)
    redis_client.xadd("alfred-ingest", {"tenant_id": "home", "event": "message",
                                        "payload": json.dumps({"id": job.message_id})})  # fmt: skip
    publish_fetches([job.to_dict()])
    attempts = "alfred:media:attempts"
    wait_for(lambda: int(redis_client.hget(attempts, job.entry_id) or 0) >= 2)
    assert events(redis_client, "media_failed") == [] and events(redis_client, "media_stored") == []
    assert service.media_journal(redis_client).get(job.entry_id) is not None
    assert len(stream_entries(redis_client)) == 1  # the message is still there
    blocker.unlink()  # the store is back (the folder can be made now)
    stored = wait_for(lambda: events(redis_client, "media_stored"), timeout=30)[0]
    assert stored["blob_url"].startswith(blocker.as_uri())
    assert row(database_url, media["id"]).attempts >= 2  # at least one attempt failed first
