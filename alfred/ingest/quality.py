"""A number's quality and messaging limit, from Meta's `phone_number_quality_update` webhooks.

Meta says what happened (`event`) rather than the rating itself: FLAGGED (quality fell; the
limit drops in 7 days unless it recovers), DOWNGRADE (the limit fell), UNFLAGGED and UPGRADE
(back to good). The gauge keeps the dashboard's scale: 3 green, 2 yellow (flagged), 1 red
(downgraded), 0 unknown; events that say nothing of quality (ONBOARDING, THROUGHPUT_UPGRADE…)
leave it as it was.
"""

from __future__ import annotations

from alfred import metrics

RATING_AFTER = {"FLAGGED": 2, "DOWNGRADE": 1, "UNFLAGGED": 3, "UPGRADE": 3}
# Business-initiated conversations per 24 h; -1 is unlimited.
LIMITS = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
    "TIER_UNLIMITED": -1,
    "UNLIMITED": -1,
}


def messaging_limit(value: dict) -> int | None:
    """Read the limit Meta reports (the newer field first), as a number of conversations."""
    for key in ("max_daily_conversations_per_business", "current_limit"):
        raw = value.get(key)
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and raw.upper() in LIMITS:
            return LIMITS[raw.upper()]
    return None


def observe(tenant_id: str, value: dict) -> None:
    """Record one phone_number_quality_update of a tenant's number in the metrics."""
    event = str(value.get("event") or "UNKNOWN").upper()
    metrics.QUALITY_EVENTS.labels(tenant_id, event).inc()
    if event in RATING_AFTER:
        metrics.QUALITY_RATING.labels(tenant_id).set(RATING_AFTER[event])
    limit = messaging_limit(value)
    if limit is not None:
        metrics.MESSAGING_LIMIT.labels(tenant_id).set(limit)
