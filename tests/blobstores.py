"""Blob store fixtures: moto's S3 server over HTTP on a free port, and both kinds of store URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.ports import free_port

S3_BUCKET = "alfred-test"
# moto accepts any credentials; boto3 still wants some, and a region.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoS3:
    """A running moto server: its endpoint, its bucket, and a way to stop it early."""

    endpoint_url: str
    bucket: str
    process: subprocess.Popen

    def client(self):
        """Return a boto3 S3 client of this server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("s3", endpoint_url=self.endpoint_url)


def start_moto_server() -> tuple[subprocess.Popen, str]:
    """Start `python -m moto.server` on a free port; return it and its URL once it answers."""
    import requests

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **S3_CREDENTIALS},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto.server exited with {process.returncode}")
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto.server did not answer within 30 s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server process started here."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """Run moto's S3 server (server mode, over HTTP) for the session, with one bucket."""
    process, url = start_moto_server()
    server = MotoS3(endpoint_url=url, bucket=S3_BUCKET, process=process)
    server.client().create_bucket(Bucket=S3_BUCKET)
    yield server
    stop(process)


@pytest.fixture(params=["file", "s3"])
def blob_store_url(request, tmp_path, monkeypatch) -> str:
    """Give an empty store's URL, a folder and an S3 prefix in turn, and point the bridge at it.

    Sets BLOB_STORE_URL (and, for S3, S3_ENDPOINT_URL and boto3's credentials) and resets the
    cached settings; ask for it before `settings` so the settings see it.
    """
    from alfred import runtime

    if request.param == "file":
        url = (tmp_path / "blobs").as_uri()
        monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    else:
        server: MotoS3 = request.getfixturevalue("moto_s3")
        url = f"s3://{server.bucket}/run-{uuid.uuid4().hex[:12]}"
        for key, value in S3_CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("S3_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("BLOB_STORE_URL", url)
    runtime.reset()
    return url
