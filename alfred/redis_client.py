"""One Redis connection pool per URL, with timeouts short enough to answer 503 quickly."""

from __future__ import annotations

from functools import lru_cache

import redis


@lru_cache(maxsize=8)
def get_redis(url: str) -> redis.Redis:
    """Return a shared client; a dead Redis fails fast instead of hanging a request."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        max_connections=64,
    )
