"""The process-wide settings and clients, built on first use and resettable in tests."""

from __future__ import annotations

from functools import lru_cache

import redis

from alfred.config import Settings
from alfred.redis_client import get_redis

# SQLAlchemy is not imported here: beat and the exporter need this module, not the database
# (13 MB of beat's PSS). What counts as the infrastructure failing is alfred.db.INFRASTRUCTURE.


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Return the settings read from the environment on first use."""
    return Settings.from_env()


def redis_client() -> redis.Redis:
    """Return the Redis client for the configured REDIS_URL."""
    return get_redis(settings().redis_url)


def reset() -> None:
    """Forget cached settings and clients, after the environment changed (tests, rotation)."""
    settings.cache_clear()
    get_redis.cache_clear()
