"""One Redis connection pool per URL, with timeouts short enough to answer 503 quickly.

REDIS_URL names one Redis or the sentinels of one (alfred/redis_url.py). Every redis-py client
of the bridge is built here, so all of them follow a Sentinel failover; Celery's broker gets
the same sentinels (`kombu_sentinel`, celeryconfig.py). `wait_for_replicas` is the optional
WAIT behind the webhook's acknowledgement (REDIS_WAIT_REPLICAS).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel

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
