"""The blob store against a real folder and moto's S3 server over HTTP."""

from __future__ import annotations

import hashlib
import os

import pytest

from alfred.blobstore import (
    BlobNotFound,
    BlobStoreUnavailable,
    FileBlobStore,
    InvalidBlobKey,
    InvalidBlobStoreUrl,
    S3BlobStore,
    open_store,
)
from alfred.config import Settings
from tests.conftest import free_port


class Chunks:
    """A non-seekable source yielding `total` pseudo-random bytes in odd-sized reads."""

    def __init__(self, total: int, fail_after: int | None = None):
        self.left, self.fail_after, self.given = total, fail_after, 0
        self.digest = hashlib.sha256()
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.given >= self.fail_after:
            raise SourceCut("the source stopped")
        size = self.left if size is None or size < 0 else min(size, self.left)
        self.largest_read = max(self.largest_read, size)
        data = os.urandom(size)
        self.left -= size
        self.given += size
        self.digest.update(data)
        return data


class SourceCut(Exception):
    """The source of a put failed half-way."""


@pytest.fixture
def store(blob_store_url, monkeypatch):
    """Give the store the settings name (a folder, then moto's S3)."""
    settings = Settings.from_env()
    assert settings.blob_store_url == blob_store_url
    return open_store(settings.blob_store_url, endpoint_url=settings.s3_endpoint_url)


def test_a_large_stream_goes_in_pieces_and_comes_back_whole(store):
    source = Chunks(20 * 1024 * 1024 + 17)
    url = store.put_stream("media/home/video-1", source, content_type="video/mp4")
    assert url == store.url_for("media/home/video-1")
    assert url.startswith(("file:///", "s3://alfred-test/run-"))
    assert store.key_for(url) == "media/home/video-1"
    # Never asked for the whole body at once.
    assert source.largest_read <= 8 * 1024 * 1024
    digest, total = hashlib.sha256(), 0
    with store.open("media/home/video-1") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            total += len(chunk)
    assert total == 20 * 1024 * 1024 + 17
    assert digest.hexdigest() == source.digest.hexdigest()


def test_bytes_exists_delete_and_list_by_prefix(store):
    for key in ("a/2026/01/x", "a/2026/01/y", "a/2026/02/z", "b/2026/01/x"):
        store.put_bytes(key, key.encode())
    assert store.get_bytes("a/2026/01/y") == b"a/2026/01/y"
    assert store.exists("a/2026/02/z")
    assert list(store.list("a/2026/01/")) == ["a/2026/01/x", "a/2026/01/y"]
    assert list(store.list("a/")) == ["a/2026/01/x", "a/2026/01/y", "a/2026/02/z"]
    assert list(store.list("a/2026/0")) == ["a/2026/01/x", "a/2026/01/y", "a/2026/02/z"]
    store.put_bytes("a/2026/01/x", b"replaced")
    assert store.get_bytes("a/2026/01/x") == b"replaced"
    store.delete("a/2026/01/x")
    store.delete("a/2026/01/x")  # twice: not an error
    assert not store.exists("a/2026/01/x")
    assert list(store.list("a/2026/01/")) == ["a/2026/01/y"]
    with pytest.raises(BlobNotFound):
        store.get_bytes("a/2026/01/x")
    with pytest.raises(BlobNotFound), store.open("nothing/here"):
        pass


def test_a_put_whose_source_fails_leaves_nothing(store):
    with pytest.raises(SourceCut):
        store.put_stream("half/written", Chunks(30 * 1024 * 1024, fail_after=10 * 1024 * 1024))
    assert not store.exists("half/written")
    assert list(store.list("half/")) == []


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "x/.tmp-1"])
def test_keys_that_climb_out_or_are_not_relative_are_refused(tmp_path, key):
    store = FileBlobStore(tmp_path)
    with pytest.raises(InvalidBlobKey):
        store.put_bytes(key, b"x")


@pytest.mark.parametrize(
    "url", ["file://relative/path", "http://example.com/x", "s3://", "file://host/x"]
)
def test_urls_other_than_file_and_s3_are_refused(url):
    with pytest.raises(InvalidBlobStoreUrl):
        open_store(url)


def test_the_default_store_is_a_folder_under_var(monkeypatch, tmp_path):
    monkeypatch.delenv("BLOB_STORE_URL", raising=False)
    settings = Settings.from_env({"ALFRED_VAR_DIR": str(tmp_path)})
    assert settings.blob_store_url == (tmp_path / "blobs").as_uri()
    assert isinstance(open_store(settings.blob_store_url), FileBlobStore)


def test_a_folder_store_that_cannot_be_written_is_unavailable(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    store = FileBlobStore(blocker)
    with pytest.raises(BlobStoreUnavailable):
        store.put_bytes("k", b"x")


def test_an_s3_endpoint_nobody_answers_is_unavailable(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3BlobStore("alfred-test", "p", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BlobStoreUnavailable):
        store.put_bytes("k", b"x")
    with pytest.raises(BlobStoreUnavailable):
        store.exists("k")
    with pytest.raises(BlobStoreUnavailable):
        list(store.list(""))


def test_a_missing_bucket_is_unavailable_not_missing_blobs(moto_s3, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3BlobStore("no-such-bucket", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        store.put_bytes("k", b"x")
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        store.get_bytes("k")
