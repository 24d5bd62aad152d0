"""Stored media's blobs through the lifecycle: copied cold and checked, then the hot copy goes."""

from __future__ import annotations

import contextlib
import hashlib

from alfred.blobstore import BlobNotFound, BlobStore, InvalidBlobKey
from alfred.lifecycle.archive import ArchiveError

COLD = "cold"
CHUNK = 1024 * 1024


def cold_prefix(archive_key: str) -> str:
    """Where an archive's media copies live: cold/<tenant>/<day>/media-<id>/ (no personal data)."""
    _, tenant, day, name = archive_key.split("/", 3)
    return f"{COLD}/{tenant}/{day}/{name.removesuffix('.jsonl.gz')}/"


def digest(store: BlobStore, key: str) -> str:
    """Hash a blob as it streams (media reach 100 MB: never read whole)."""
    hashed = hashlib.sha256()
    with store.open(key) as handle:
        while chunk := handle.read(CHUNK):
            hashed.update(chunk)
    return hashed.hexdigest()


class _Hashing:
    def __init__(self, handle):
        self.handle, self.hashed = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.hashed.update(chunk)
        return chunk


def _hot_key(store: BlobStore, record: dict) -> str | None:
    url = record.get("hot_url") or record.get("blob_url")
    if not url:
        return None
    try:
        return store.key_for(url)
    except InvalidBlobKey:
        return None  # written under another BLOB_STORE_URL: not ours to move


def to_cold(store: BlobStore, archive_key: str, records: list[dict]) -> list[dict]:
    """Copy each record's hot blob to the cold area, check its SHA-256, and say where it went.

    A cold copy already there and matching (a resumed run) is kept; a hot blob already gone
    with no good cold copy raises, so the row is never anonymised without its media.
    """
    moved = []
    prefix = cold_prefix(archive_key)
    for record in records:
        hot = _hot_key(store, record)
        if hot is None or record.get("status") != "stored":
            moved.append(record)
            continue
        cold = prefix + hot.rsplit("/", 1)[-1]
        expected = record.get("sha256")
        if not _matches(store, cold, expected):
            try:
                with store.open(hot) as handle:
                    reader = _Hashing(handle)
                    store.put_stream(cold, reader, content_type=record.get("mime_type"))
            except BlobNotFound:
                raise ArchiveError(
                    f"media {record['id']}: hot blob and cold copy both missing"
                ) from None
            if expected and reader.hashed.hexdigest() != expected:
                store.delete(cold)
                raise ArchiveError(f"media {record['id']}: hot blob differs from its sha256")
            if not _matches(store, cold, expected or reader.hashed.hexdigest()):
                raise ArchiveError(f"media {record['id']}: cold copy read back differs")
        moved.append({**record, "hot_url": store.url_for(hot), "blob_url": store.url_for(cold)})
    return moved


def _matches(store: BlobStore, key: str, expected: str | None) -> bool:
    try:
        return expected is not None and digest(store, key) == expected
    except BlobNotFound:
        return False


def drop_hot(store: BlobStore, records: list[dict]) -> int:
    """Delete the hot blobs of verified records (again, harmlessly, after a resumed kill)."""
    dropped = 0
    for record in records:
        if record.get("hot_url") and (hot := _hot_key(store, {"blob_url": record["hot_url"]})):
            store.delete(hot)
            dropped += 1
    return dropped


def drop_cold(store: BlobStore, archive_key: str) -> int:
    """Delete every cold copy of an archive's media; return how many."""
    keys = list(store.list(cold_prefix(archive_key)))
    for key in keys:
        store.delete(key)
    return len(keys)


def forget(store: BlobStore, url: str | None) -> None:
    """Delete one blob, hot or cold, by its URL (erase); a missing one is already gone."""
    if url:
        with contextlib.suppress(InvalidBlobKey):
            store.delete(store.key_for(url))
