"""Read a request body within a size cap and a deadline, so a slow client cannot pin a thread."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


class BodyRefused(Exception):
    """The body could not be read: too large, too slow, or cut short."""

    def __init__(self, status: int, outcome: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.outcome = outcome
        self.detail = detail


class _Watchdog:
    """One thread per process that shuts the read side of sockets whose deadline passed.

    A gthread worker reads the body in the request's thread with a blocking socket and no
    timeout; a per-recv timeout would not help against one byte a second. Shutting the read
    side wakes the blocked recv at once with end-of-file, and the answer can still be written.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list] = []
        self._seq = itertools.count()
        self._pid: int | None = None

    def arm(self, sock: socket.socket, seconds: float) -> list:
        """Start a deadline for this socket; return the handle disarm takes."""
        entry = [time.monotonic() + seconds, next(self._seq), sock, "armed"]
        with self._cond:
            if self._pid != os.getpid():  # first use, or a fork (gunicorn --preload) since
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="body-deadline", daemon=True).start()
            heapq.heappush(self._heap, entry)
            self._cond.notify()
        return entry

    def disarm(self, entry: list) -> bool:
        """Stop the deadline; return True when it had already fired."""
        with self._cond:
            fired = entry[3] == "fired"
            entry[3] = "done"
            return fired

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][3] == "done":
                    if self._heap:
                        heapq.heappop(self._heap)
                    else:
                        self._cond.wait()
                entry = self._heap[0]
                delay = entry[0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                entry[3] = "fired"
            with contextlib.suppress(OSError):  # the client went away meanwhile
                entry[2].shutdown(socket.SHUT_RD)


_WATCHDOG = _Watchdog()


def read_body(environ: dict, *, max_bytes: int, deadline_s: float) -> bytes:
    """Return the whole body, or raise BodyRefused (413, 408 or 400) saying why."""
    length_header = environ.get("CONTENT_LENGTH") or None
    try:
        length = int(length_header) if length_header is not None else None
    except ValueError:
        raise BodyRefused(400, "bad_length", f"Content-Length {length_header!r}") from None
    if length is not None and length > max_bytes:
        raise BodyRefused(413, "too_large", f"body of {length} bytes, over {max_bytes}")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length is None and not chunked and not environ.get("wsgi.input_terminated"):
        return b""
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    handle = _WATCHDOG.arm(sock, deadline_s) if sock is not None else None
    chunks: list[bytes] = []
    total = 0
    error: Exception | None = None
    try:
        while length is None or total < length:
            chunk = stream.read(CHUNK if length is None else min(CHUNK, length - total))
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise BodyRefused(413, "too_large", f"body over {max_bytes} bytes")
            chunks.append(chunk)
    except BodyRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - the server's reader on a dropped or shut socket
        error = exc
    finally:
        fired = _WATCHDOG.disarm(handle) if handle is not None else False
    cut_short = error is not None or (length is not None and total < length)
    if cut_short and fired:
        raise BodyRefused(408, "body_timeout", f"body not received within {deadline_s:g} s")
    if cut_short:
        raise BodyRefused(400, "body_incomplete", f"connection closed after {total} bytes")
    return b"".join(chunks)
