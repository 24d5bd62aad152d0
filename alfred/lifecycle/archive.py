"""Cold archives: compressed JSON Lines in the blob store, trusted only once read back."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Protocol

from alfred.blobstore import BlobNotFound


class ArchiveError(Exception):
    """An archive could not be written, or what was read back is not what was written."""


class Store(Protocol):
    """The blob store calls the lifecycle uses (alfred/blobstore.py)."""

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class Written:
    records: int
    sha256: str


def encode(records: list[dict]) -> bytes:
    """Render records as gzip-compressed JSON Lines, the same bytes for the same records."""
    lines = "".join(
        json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) + "\n" for r in records
    )
    # mtime=0: no timestamp in the header, so a rewrite of the same records hashes the same.
    return gzip.compress(lines.encode(), compresslevel=6, mtime=0)


def decode(data: bytes) -> list[dict]:
    """Read an archive back; a truncated or corrupt one raises ArchiveError."""
    try:
        text = gzip.decompress(data).decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ArchiveError(f"archive does not decompress: {type(exc).__name__}") from None
    try:
        return [json.loads(line) for line in text.splitlines() if line]
    except ValueError:
        raise ArchiveError("archive holds a line that is not JSON") from None


def sha256(data: bytes) -> str:
    """Hash an archive's bytes."""
    return hashlib.sha256(data).hexdigest()


def write_verified(store: Store, key: str, records: list[dict]) -> Written:
    """Write an archive, read it back, count and hash it; raise ArchiveError unless it matches."""
    data = encode(records)
    expected = sha256(data)
    store.put_bytes(key, data, content_type="application/gzip")
    if read_verified(store, key, records=len(records), digest=expected) is None:
        raise ArchiveError(f"archive {key} read back differs from what was written")
    return Written(records=len(records), sha256=expected)


def read_verified(
    store: Store, key: str, *, records: int | None, digest: str | None
) -> list[dict] | None:
    """Read an archive back: its records if their count and hash match those given, else None."""
    try:
        data = store.get_bytes(key)
    except BlobNotFound:
        return None
    if digest is not None and sha256(data) != digest:
        return None
    try:
        found = decode(data)
    except ArchiveError:
        return None
    if records is not None and len(found) != records:
        return None
    return found
