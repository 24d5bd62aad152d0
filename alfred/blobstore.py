"""One small interface over BLOB_STORE_URL: a folder (`file:///path`) or S3 (`s3://bucket/prefix`).

Keys are relative, `/`-separated names (`media/home/2026/12/01/<uuid>`); the store adds its
own folder or prefix. A blob is written whole or not at all: the folder store renames a
finished temporary file into place, S3 makes an object visible only when its PUT (or
multipart upload) completes. Every failure to reach the store is a `BlobStoreUnavailable`,
which callers retry; a missing blob is a `BlobNotFound`.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

# Streams are copied in pieces of this size: memory per transfer stays bounded.
CHUNK_BYTES = 1024 * 1024
# S3 multipart: parts of 8 MiB, one at a time, so an upload holds at most ~8 MiB in memory.
S3_PART_BYTES = 8 * 1024 * 1024
_TMP_PREFIX = ".tmp-"


class BlobStoreError(Exception):
    """A blob store operation failed."""


class BlobStoreUnavailable(BlobStoreError):
    """The store cannot be reached or refused the operation for now: retry later."""


class BlobNotFound(BlobStoreError, KeyError):
    """No blob under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "blob not found"


class InvalidBlobKey(BlobStoreError, ValueError):
    """A key that is absolute, empty, or climbs out of the store (`..`)."""


class InvalidBlobStoreUrl(BlobStoreError, ValueError):
    """BLOB_STORE_URL is neither `file:///absolute/path` nor `s3://bucket[/prefix]`."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def check_key(key: str) -> str:
    """Return the key if it is a safe relative name, else raise InvalidBlobKey."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidBlobKey(f"not a relative blob key: {key!r}")
    if any(p.startswith(_TMP_PREFIX) for p in parts):
        raise InvalidBlobKey(f"blob keys may not start a segment with {_TMP_PREFIX!r}: {key!r}")
    return key


class BlobStore:
    """The operations every store offers; keys are relative to the store's root."""

    url: str  # the root, as configured

    def put_stream(self, key: str, stream: Readable, *, content_type: str | None = None) -> str:
        """Store what `stream` yields (read in pieces, never whole) and return the blob URL."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        """Store bytes and return the blob URL."""
        return self.put_stream(key, io.BytesIO(data), content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        """Return a blob's bytes whole (for small blobs; use open() for large ones)."""
        with self.open(key) as handle:
            return handle.read()

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open a blob for a streaming read: `with store.open(key) as f: f.read(CHUNK_BYTES)`."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under the key."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Delete a blob; deleting one that is not there is not an error."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys that start with `prefix` (a plain string prefix, as in S3), sorted."""
        raise NotImplementedError

    def url_for(self, key: str) -> str:
        """Return the blob URL (`file://…` or `s3://…`) of a key."""
        raise NotImplementedError

    def key_for(self, blob_url: str) -> str:
        """Return the key of a blob URL of this store (InvalidBlobKey if it is not one)."""
        root = self.url.rstrip("/") + "/"
        if not blob_url.startswith(root):
            raise InvalidBlobKey(f"{blob_url!r} is not in the store {self.url!r}")
        return check_key(unquote(blob_url[len(root) :]))


class FileBlobStore(BlobStore):
    """Blobs as files under one folder, each written to a temporary name and renamed."""

    def __init__(self, root: Path):
        self.root = root
        self.url = root.as_uri()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot write {key!r} under {self.root}: {exc}") from exc

    def put_stream(self, key: str, stream: Readable, *, content_type: str | None = None) -> str:
        path = self._path(key)
        tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
        try:
            with self._writing(key):
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(tmp, "wb")  # noqa: SIM115 - closed by the with below
            with handle:
                # The source's own errors (a download cut short) pass through untouched; only
                # the writes are the store's.
                while chunk := stream.read(CHUNK_BYTES):
                    with self._writing(key):
                        handle.write(chunk)
                with self._writing(key):
                    handle.flush()
                    os.fsync(handle.fileno())
            with self._writing(key):
                os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return self.url_for(key)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key!r} under {self.root}") from None
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read {key!r} under {self.root}: {exc}") from exc
        with handle:
            yield handle

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot look at {key!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot delete {key!r}: {exc}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the folder the prefix names, then filter by the rest of it.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if ".." in prefix.split("/"):
            raise InvalidBlobKey(f"not a relative prefix: {prefix!r}")
        found: list[str] = []
        try:
            for dirpath, _, files in os.walk(folder):
                for name in files:
                    if name.startswith(_TMP_PREFIX):
                        continue
                    key = Path(dirpath, name).relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        found.append(key)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot list {prefix!r} under {self.root}: {exc}") from exc
        yield from sorted(found)

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()


class _S3Body(io.RawIOBase):
    """An S3 object's body as a file object whose read errors are BlobStoreUnavailable."""

    def __init__(self, body, key: str):
        self._body, self._key = body, key

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, OSError) as exc:
            raise BlobStoreUnavailable(f"reading {self._key!r} failed: {exc}") from exc

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3BlobStore(BlobStore):
    """Blobs as objects under one bucket and prefix, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url
        options: dict = {
            "retries": {"mode": "standard", "max_attempts": 3},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        if endpoint_url:
            # MinIO, Supabase Storage and Tigris want path-style addressing, and some of them
            # reject the CRC checksums botocore adds by default since 1.36.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        # Credentials and region come from boto3's usual variables (AWS_ACCESS_KEY_ID, …).
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=Config(**options)
        )

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r}, endpoint_url={self.endpoint_url!r})"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        """Turn boto3's errors into the store's: missing → BlobNotFound, the rest unavailable."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFound(f"no blob {key!r} in {self.url}") from None
            raise BlobStoreUnavailable(
                f"{what} {key!r} in {self.url}: {code} {error.get('Message', '')}".rstrip()
            ) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise BlobStoreUnavailable(f"{what} {key!r} in {self.url}: {exc}") from exc

    def put_stream(self, key: str, stream: Readable, *, content_type: str | None = None) -> str:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=S3_PART_BYTES,
            multipart_chunksize=S3_PART_BYTES,
            max_concurrency=1,
            use_threads=False,
        )
        extra = {"ContentType": content_type} if content_type else None
        with self._errors("cannot write", key):
            self.client.upload_fileobj(
                stream, self.bucket, self._name(key), ExtraArgs=extra, Config=transfer
            )
        return self.url_for(key)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with self._errors("cannot read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        reader = io.BufferedReader(_S3Body(body, key), CHUNK_BYTES)
        with reader:
            yield reader

    def exists(self, key: str) -> bool:
        try:
            with self._errors("cannot look at", key):
                self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with self._errors("cannot delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        with self._errors("cannot list", prefix or "/"):
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][cut:]

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"


def open_store(url: str, *, endpoint_url: str | None = None) -> BlobStore:
    """Build the store a BLOB_STORE_URL names (`file:///path` or `s3://bucket/prefix`)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidBlobStoreUrl(f"BLOB_STORE_URL {url!r}: use file:///absolute/path")
        return FileBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidBlobStoreUrl(f"BLOB_STORE_URL {url!r}: use s3://bucket/prefix")
        return S3BlobStore(parts.netloc, unquote(parts.path), endpoint_url=endpoint_url)
    raise InvalidBlobStoreUrl(f"BLOB_STORE_URL {url!r}: only file:// and s3:// are supported")


@lru_cache(maxsize=8)
def blob_store(url: str, endpoint_url: str | None = None) -> BlobStore:
    """Return the process's store for a URL (built once: a boto3 client is costly to make)."""
    return open_store(url, endpoint_url=endpoint_url)


def store_for(settings) -> BlobStore:
    """Return the store Settings name (BLOB_STORE_URL, S3_ENDPOINT_URL)."""
    return blob_store(settings.blob_store_url, settings.s3_endpoint_url)
