"""Free TCP ports for the servers tests start, safe under pytest-xdist."""

from __future__ import annotations

import os
import random
import socket

# bind(0) hands out a port from the kernel's ephemeral range (32768-60999 on Linux), which every
# outgoing connection draws from too, and which nothing reserves between our close() and the
# server's own bind: with several xdist workers starting servers at once, two were handed the
# same port (a moto server's readiness probe was answered by another worker's server). So each
# xdist worker takes its ports from a block of its own below the ephemeral range, in turn from
# a random start (two runs on one machine seldom walk the same ports), skipping ports in use.
PORT_BASE = 10_000
PORTS_PER_WORKER = 1_300  # 16 workers fit below 32768
_next: int | None = None


def _bound(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """Return a TCP port nobody listens on right now (and, under xdist, no other worker's)."""
    global _next
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    start = PORT_BASE + int(worker.removeprefix("gw")) * PORTS_PER_WORKER
    if _next is None:
        _next = random.randrange(PORTS_PER_WORKER)
    for _ in range(PORTS_PER_WORKER):
        port = start + _next
        _next = (_next + 1) % PORTS_PER_WORKER
        if _bound(port):
            return port
    raise RuntimeError(f"no free port in {start}-{start + PORTS_PER_WORKER - 1}")
