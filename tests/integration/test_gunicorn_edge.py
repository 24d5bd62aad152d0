"""The web under real gunicorn (gunicorn.conf.py): slow clients, chunked bodies, raw bytes."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from alfred.ingest.receive import ingest_journal
from tests.conftest import APP_SECRET
from tests.helpers import body_of, fixture, signed_headers
from tests.processes import gunicorn

# The database plays no part here: one of the two is enough.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BODY_TIMEOUT_S = 2
# More than gunicorn.conf.py's 2 workers × 4 threads: every thread would be pinned.
SLOW_CLIENTS = 20


def _slow_client(port: int, answers: list) -> None:
    """Send headers announcing 100,000 bytes, then one byte every half second, for 30 s at most."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        sock.settimeout(0.5)
        answer = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answer:
            try:
                sock.sendall(b" ")
                answer = sock.recv(200)
            except TimeoutError:
                continue
            except OSError:
                break
        answers.append(answer)


def test_slow_clients_cannot_stall_a_signed_delivery(env, redis_client):
    with gunicorn({"WEBHOOK_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}) as url:
        port = int(url.rsplit(":", 1)[1])
        answers: list[bytes] = []
        threads = [
            threading.Thread(target=_slow_client, args=(port, answers), daemon=True)
            for _ in range(SLOW_CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # let them all take a thread
        body = body_of(fixture("text"))
        try:
            answer = requests.post(
                f"{url}/webhook", data=body, headers=signed_headers(body, APP_SECRET), timeout=30
            )
        finally:
            for thread in threads:
                thread.join(30)
        assert answer.status_code == 200
        assert ingest_journal(redis_client).size() == 1
        assert len(answers) == SLOW_CLIENTS
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), set(answers)


def test_a_chunked_body_over_the_limit_gets_413_not_403(env, redis_client):
    chunk = b"x" * (1 << 20)

    def chunks():
        for _ in range(4):
            yield chunk
        yield b"y" * 1000

    with gunicorn() as url:
        answer = requests.post(
            f"{url}/webhook",
            data=chunks(),
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
            },
            timeout=30,
        )
        assert answer.status_code == 413
        assert answer.json()["error"] == "too_large"
        # A chunked body under the limit is read whole and verified as usual.
        body = body_of(fixture("text"))
        answer = requests.post(
            f"{url}/webhook",
            data=iter([body[:100], body[100:]]),
            headers=signed_headers(body, APP_SECRET),
            timeout=30,
        )
        assert answer.status_code == 200
    assert ingest_journal(redis_client).size() == 1


def test_a_raw_non_ascii_byte_in_the_signature_header_is_a_403(env, redis_client):
    body = body_of(fixture("text"))
    with gunicorn() as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Hub-Signature-256: sha256=\xe9" + b"0" * 63 + b"\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"bad_signature" in answer
    assert ingest_journal(redis_client).size() == 0
