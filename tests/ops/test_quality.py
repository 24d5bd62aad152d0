"""phone_number_quality_update sets the quality rating and the messaging limit."""

from __future__ import annotations

from alfred import metrics
from alfred.ingest import quality


def gauge(metric, tenant: str) -> float:
    return metric.labels(tenant)._value.get()


def test_flagged_then_downgraded_then_upgraded_moves_the_rating():
    quality.observe("q-home", {"event": "FLAGGED", "current_limit": "TIER_10K"})
    assert gauge(metrics.QUALITY_RATING, "q-home") == 2
    assert gauge(metrics.MESSAGING_LIMIT, "q-home") == 10000
    quality.observe("q-home", {"event": "DOWNGRADE", "current_limit": "TIER_1K"})
    assert gauge(metrics.QUALITY_RATING, "q-home") == 1
    assert gauge(metrics.MESSAGING_LIMIT, "q-home") == 1000
    quality.observe("q-home", {"event": "UPGRADE", "current_limit": "TIER_10K"})
    assert gauge(metrics.QUALITY_RATING, "q-home") == 3


def test_an_event_about_throughput_leaves_the_rating_and_reads_the_newer_limit_field():
    quality.observe("q-biz", {"event": "FLAGGED"})
    quality.observe(
        "q-biz",
        {
            "event": "THROUGHPUT_UPGRADE",
            "current_limit": "TIER_1K",
            "max_daily_conversations_per_business": "TIER_UNLIMITED",
        },
    )
    assert gauge(metrics.QUALITY_RATING, "q-biz") == 2
    assert gauge(metrics.MESSAGING_LIMIT, "q-biz") == -1
    assert metrics.QUALITY_EVENTS.labels("q-biz", "THROUGHPUT_UPGRADE")._value.get() == 1
