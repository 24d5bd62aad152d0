"""A tenant's token that Meta refused (190): marked suspect until a rotation swaps a new one in."""

from __future__ import annotations

import time

import redis

# Sends that met a refused token wait this long for a working one, then dead-letter.
MAX_WAIT_S = 24 * 3600.0


def suspect_key(tenant_id: str) -> str:
    """Name the Redis key holding when the tenant's token was first refused."""
    return f"alfred:token:suspect:{tenant_id}"


def mark_suspect(client: redis.Redis, tenant_id: str, now: float | None = None) -> float:
    """Note that Meta refused the tenant's token; return when it was first refused."""
    now = time.time() if now is None else now
    client.set(suspect_key(tenant_id), repr(now), nx=True, ex=int(MAX_WAIT_S * 2))
    since = client.get(suspect_key(tenant_id))
    return float(since) if since else now


def suspect_since(client: redis.Redis, tenant_id: str) -> float | None:
    """Return when the tenant's token was first refused, or None if it is trusted."""
    since = client.get(suspect_key(tenant_id))
    return float(since) if since else None


def clear_suspect(client: redis.Redis, tenant_id: str) -> None:
    """Trust the tenant's token again (a new one was swapped in)."""
    client.delete(suspect_key(tenant_id))
