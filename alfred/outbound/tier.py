"""The messaging-tier meter: business-initiated conversations per tenant over a rolling 24 h.

Tier 1 allows 1,000 of them in any 24 h. A user counts once until 24 h after their first
conversation in the window, then again. One sorted set per tenant (member = user, score =
when their conversation opened) is trimmed and counted atomically by a Lua script.
"""

from __future__ import annotations

import logging
import math

import redis

from alfred import metrics

log = logging.getLogger(__name__)

WINDOW_S = 24 * 3600
TIER_KEY = "alfred:tier:{tenant_id}"

_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# NX keeps the first score: a user contacted again inside the window is the same conversation.
_RECORD = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local added = redis.call('ZADD', KEYS[1], 'NX', now, ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) + 3600)
return {added, count}
"""
)

_USAGE = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[2])), '+inf')
"""
)


class TierMeter:
    """Counts each tenant's business-initiated conversations and warns near the tier limit."""

    def __init__(self, client: redis.Redis, *, limit: int = 1000, warn_ratio: float = 0.8):
        if limit < 1 or not 0 < warn_ratio <= 1:
            raise ValueError("limit >= 1 and 0 < warn_ratio <= 1")
        self._client = client
        self._record = client.register_script(_RECORD)
        self._usage = client.register_script(_USAGE)
        self.limit = limit
        self.warn_at = max(1, math.ceil(warn_ratio * limit))

    def record(self, tenant_id: str, user_key: str, now: float | None = None) -> int:
        """Count a business-initiated conversation with this user; return the 24 h usage."""
        added, count = self._record(
            keys=[TIER_KEY.format(tenant_id=tenant_id)],
            args=["" if now is None else repr(float(now)), user_key, WINDOW_S],
        )
        metrics.CONVERSATIONS_24H.labels(tenant_id).set(count)
        # Only the call that adds the crossing user sees count == threshold (the script is
        # atomic), so each crossing warns once, however many workers record at the same time.
        if added and count == self.warn_at:
            metrics.TIER_WARNINGS.labels(tenant_id).inc()
            log.warning(
                "tier.near_limit",
                extra={
                    "tenant_id": tenant_id,
                    "usage": count,
                    "limit": self.limit,
                    "warn_at": self.warn_at,
                },
            )
        if added and count == self.limit:
            log.error(
                "tier.limit_reached",
                extra={"tenant_id": tenant_id, "usage": count, "limit": self.limit},
            )
        return int(count)

    def usage(self, tenant_id: str, now: float | None = None) -> int:
        """Return how many users opened a business-initiated conversation in the last 24 h."""
        count = self._usage(
            keys=[TIER_KEY.format(tenant_id=tenant_id)],
            args=["" if now is None else repr(float(now)), WINDOW_S],
        )
        metrics.CONVERSATIONS_24H.labels(tenant_id).set(count)
        return int(count)
