"""Prometheus metrics, counted where the events happen.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn workers, Celery children), every process
writes to that folder and /metrics aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

WEBHOOK_REQUESTS = Counter(
    "alfred_webhook_requests_total", "POST /webhook answers by outcome", ["outcome"]
)
WEBHOOK_SECONDS = Histogram("alfred_webhook_seconds", "Time to answer POST /webhook", buckets=_FAST)
INGEST_EVENTS = Counter(
    "alfred_ingest_events_total",
    "Inbound events by tenant, kind and outcome (appended, duplicate)",
    ["tenant", "event", "outcome"],
)
INGEST_LATENCY = Histogram(
    "alfred_ingest_latency_seconds",
    "From the webhook's arrival to its events in «alfred-ingest»",
    buckets=_FAST,
)
QUARANTINED = Counter(
    "alfred_quarantined_total", "Inbound events quarantined, by reason", ["reason"]
)
JOURNAL_REDRIVES = Counter(
    "alfred_journal_redrives_total", "Journal entries re-published by the sweeper", ["journal"]
)
JOURNAL_SIZE = Gauge(
    "alfred_journal_size", "Journal entries not yet done", ["journal"], multiprocess_mode="max"
)
SENDS = Counter(
    "alfred_sends_total",
    "Outbound messages by tenant and final outcome (sent, failed, dead_lettered, duplicate)",
    ["tenant", "outcome"],
)
SEND_ATTEMPTS = Counter(
    "alfred_send_attempts_total",
    "Graph API send attempts by tenant and result (ok or Meta's reason)",
    ["tenant", "result"],
)
SEND_SECONDS = Histogram(
    "alfred_send_seconds", "Duration of one Graph API send call", ["tenant"], buckets=_FAST
)
SEND_LAG = Histogram(
    "alfred_send_lag_seconds", "From enqueue to the Graph API call", ["tenant"], buckets=_FAST
)
QUALITY_RATING = Gauge(
    "alfred_phone_quality_rating",
    "Phone number quality (3 green, 2 yellow, 1 red, 0 unknown)",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
CONVERSATIONS_24H = Gauge(
    "alfred_business_initiated_conversations_24h",
    "Business-initiated conversations opened in the last 24 h (messaging tier usage)",
    ["tenant"],
    multiprocess_mode="mostrecent",
)


def render() -> tuple[bytes, str]:
    """Return the exposition text for /metrics, aggregated across processes when configured."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


# --- Outbound limits, tier meter and the outbox bridge (alfred/outbound/ratelimit.py,
# tier.py, bridge.py) ---
RATE_LIMITED = Counter(
    "alfred_rate_limited_total",
    "Send slots refused by the shared limiter, by tenant and limit (number, recipient)",
    ["tenant", "limit"],
)
TIER_WARNINGS = Counter(
    "alfred_tier_warnings_total",
    "Times a tenant's 24 h business-initiated conversations crossed the warning ratio",
    ["tenant"],
)
OUTBOX_ENTRIES = Counter(
    "alfred_outbox_entries_total",
    "«alfred-outbox» entries handled by the bridge, by outcome "
    "(enqueued, rejected, enqueue_failed)",
    ["outcome"],
)
OUTBOX_CLAIMED = Counter(
    "alfred_outbox_claimed_total",
    "«alfred-outbox» entries taken over from consumers that stopped (XAUTOCLAIM)",
)
OUTBOX_RECONNECTS = Counter(
    "alfred_outbox_reconnects_total",
    "Times the outbox bridge lost Redis or its consumer group and recovered",
    ["reason"],
)

# --- Tokens and media (alfred/tokens/, alfred/media/); the same names as ops' alert rules ---
TOKEN_EXPIRY = Gauge(
    "alfred_token_expiry_timestamp_seconds",
    "When the tenant's token expires (Unix time, from debug_token); 0 = never",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
TOKEN_ROTATIONS = Counter(
    "alfred_token_rotations_total",
    "Token rotations by tenant and outcome (rotated, failed)",
    ["tenant", "outcome"],
)
MEDIA = Counter(
    "alfred_media_total",
    "Inbound media by tenant and outcome (stored, failed)",
    ["tenant", "outcome"],
)
