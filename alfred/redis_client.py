"""One Redis connection pool per URL, with timeouts short enough to answer 503 quickly.

REDIS_URL names one Redis or the sentinels of one (alfred/redis_url.py). Every redis-py client
of the bridge is built here, so all of them follow a Sentinel failover; Celery's broker gets
the same sentinels (`kombu_sentinel`, celeryconfig.py). `wait_for_replicas` is the optional
WAIT behind the webhook's acknowledgement (REDIS_WAIT_REPLICAS).
"""

from __future__ import annotations

import contextlib
import time
from functools import lru_cache
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from alfred.redis_url import is_sentinel, parse_sentinel_url

# The same fail-fast budget as a plain Redis: a dead master answers 503, never a hang.
CLIENT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
    "max_connections": 64,
}
# Asking a sentinel where the master is must be quicker still: a dead sentinel is skipped
# and the next one asked.
SENTINEL_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


# How often a process asks the sentinels whether the master moved, at most.
MASTER_CHECK_EVERY_S = 0.25


class CheckedSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, asking the sentinels where the master is every 250 ms.

    redis-py asks only when it opens a connection, and asks with SENTINEL MASTERS, which keeps
    naming the old master until the failover has reconfigured every replica (seconds later).
    Meanwhile a pooled connection keeps writing to the old master, which takes the writes until
    Sentinel tells it to turn replica, up to ~10 s after the promotion; all of it vanishes when
    it resyncs: 190 of 300 acknowledged deliveries in one `SENTINEL FAILOVER` run
    (docs/reliability.md). So on use, at most every 250 ms, ask every sentinel
    GET-MASTER-ADDR-BY-NAME (which names the promoted replica at once); when most of them name
    a new master, drop the idle connections to the old one (redis-py closes busy ones as they
    are released) and the next command goes to the new master.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._checked_at = 0.0
        # Where each new connection asks (SentinelManagedConnection.connect) too: redis-py's
        # own answer would send it back to the old master.
        self.proxy.get_master_address = self._master_address

    def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if self.is_master and now - self._checked_at >= MASTER_CHECK_EVERY_S:
            self._checked_at = now
            # No master known: the connection below fails, and the caller says 503.
            with contextlib.suppress(redis.RedisError):
                self._master_address()
        return super().get_connection(*args, **kwargs)

    def _master_address(self) -> tuple[str, int]:
        """The address most sentinels name now; idle connections elsewhere are dropped."""
        named: list[tuple[str, int]] = []
        for sentinel in self.sentinel_manager.sentinels:
            try:
                address = sentinel.sentinel_get_master_addr_by_name(self.service_name)
            except redis.RedisError:
                continue
            if address:
                host, port = address
                named.append((host.decode() if isinstance(host, bytes) else host, int(port)))
        found = max(set(named), key=named.count, default=None)
        if found is None or named.count(found) * 2 <= len(self.sentinel_manager.sentinels):
            # No majority: redis-py's own discovery (it raises MasterNotFoundError if none).
            found = self.sentinel_manager.discover_master(self.service_name)
        if self.proxy.master_address != found:
            self.proxy.master_address = found
            self.disconnect(inuse_connections=False)
        return found


def kombu_sentinel(url: str) -> tuple[str, dict]:
    """Return the broker URL and transport options kombu's Sentinel transport expects.

    kombu reads the database and the password from the first URL only, and `master_name`
    from the transport options, not from the URL (kombu/transport/redis.py, SentinelChannel).
    """
    parsed = parse_sentinel_url(url)
    auth = f":{quote(parsed.password, safe='')}@" if parsed.password is not None else ""
    if parsed.username:
        auth = f"{quote(parsed.username, safe='')}{auth or '@'}"
    broker_url = ";".join(f"sentinel://{auth}{h}:{p}/{parsed.db}" for h, p in parsed.sentinels)
    return broker_url, {"master_name": parsed.master_name, "sentinel_kwargs": SENTINEL_OPTIONS}


@lru_cache(maxsize=8)
def get_redis(url: str) -> redis.Redis:
    """Return a shared client; a dead Redis fails fast instead of hanging a request.

    For a Sentinel URL the client asks the sentinels for the master on every new connection,
    and drops its connections when the master it knew became a replica: after a failover the
    next command goes to the new master.
    """
    if is_sentinel(url):
        parsed = parse_sentinel_url(url)
        sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=SENTINEL_OPTIONS)
        return sentinel.master_for(
            parsed.master_name,
            connection_pool_class=CheckedSentinelPool,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            **CLIENT_OPTIONS,
        )
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


class ReplicasBehind(redis.RedisError):
    """Fewer replicas than REDIS_WAIT_REPLICAS confirmed a write within the timeout."""


def wait_for_replicas(acked: int, replicas: int, timeout_ms: int) -> None:
    """Raise ReplicasBehind unless WAIT's answer (`acked`) reached `replicas`."""
    if acked < replicas:
        raise ReplicasBehind(f"{acked} of {replicas} replica(s) confirmed within {timeout_ms} ms")
