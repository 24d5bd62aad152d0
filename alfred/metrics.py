"""Prometheus metrics, counted where the events happen, and their multiprocess set-up.

With PROMETHEUS_MULTIPROC_DIR set (it must be, before this module is imported, in every
process of a machine: web and its gunicorn workers, the worker, beat, the outbox bridge),
every process writes its values to files in that folder and the exporter on METRICS_PORT
(alfred/operations/exporter.py) sums them. Without it, each process counts for itself
(tests, one-off commands). docs/operations.md, Metrics.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Ingest lag is alerted on at a minute: the buckets must reach past it.
_LAG = (*_FAST, 30, 60, 120, 300, 900)

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
    buckets=_LAG,
)
QUARANTINED = Counter(
    "alfred_quarantined_total", "Inbound events quarantined, by reason", ["reason"]
)
JOURNAL_REDRIVES = Counter(
    "alfred_journal_redrives_total", "Journal entries re-published by the sweeper", ["journal"]
)
JOURNAL_SIZE = Gauge(
    "alfred_journal_size",
    "Journal entries not yet done, as the last sweep saw them",
    ["journal"],
    multiprocess_mode="mostrecent",
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


# --- Operations (alfred/operations/): processes, tokens, quality and tier, media, lifecycle,
# alerts. Names the alert rules (ops/prometheus) and the dashboard (ops/grafana) rely on. ---
PROCESS_HEARTBEAT = Gauge(
    "alfred_process_heartbeat_timestamp_seconds",
    "When each process last said it was alive (Unix time); stale = the process is down",
    ["process"],
    # The newest of a process type's pids; a dead pid's stale value loses to its successor's.
    multiprocess_mode="max",
)
# The threads pool cannot kill a hung task: the watchdog (alfred/operations/watchdog.py) sees it.
TASK_OVERRUNS = Counter(
    "alfred_task_overruns_total",
    "Tasks still running past the watchdog's bound (60 s), by task name; never killed",
    ["task"],
)
TASK_OLDEST_RUNNING = Gauge(
    "alfred_task_oldest_running_seconds",
    "How long the longest-running task of a worker process has run, as the watchdog saw it",
    multiprocess_mode="livemax",
)
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
QUALITY_EVENTS = Counter(
    "alfred_phone_quality_events_total",
    "phone_number_quality_update events by tenant and Meta's event (FLAGGED, DOWNGRADE, …)",
    ["tenant", "event"],
)
MESSAGING_LIMIT = Gauge(
    "alfred_messaging_limit",
    "The number's messaging limit (business-initiated conversations per 24 h; -1 unlimited)",
    ["tenant"],
    multiprocess_mode="mostrecent",
)
SEND_ERRORS = Counter(
    "alfred_send_errors_total",
    "Graph API send errors by tenant and Meta's error code",
    ["tenant", "code"],
)
SEND_RETRIES = Counter(
    "alfred_send_retries_total",
    "Sends scheduled for another attempt, by tenant and reason",
    ["tenant", "reason"],
)
MEDIA = Counter(
    "alfred_media_total",
    "Inbound media by tenant and outcome (stored, failed)",
    ["tenant", "outcome"],
)
LIFECYCLE = Counter(
    "alfred_pii_lifecycle_total",
    "Rows taken through the personal-data lifecycle, by tenant and stage (archived, anonymised)",
    ["tenant", "stage"],
)
ALERT_EVENTS = Counter(
    "alfred_alert_events_total",
    "PagerDuty events sent by the in-app notifier, by condition, action and outcome",
    ["condition", "action", "outcome"],
)


# --- multiprocess set-up ---------------------------------------------------------------------


def multiproc_dir() -> Path | None:
    """Return the folder every process writes its values to, if multiprocess mode is on."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def wipe_multiproc_dir(path: Path) -> None:
    """Empty the folder before a machine's processes start: no value outlives a restart."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges; its counters stay summed (they must not go back)."""
    if multiproc_dir() is not None:
        multiprocess.mark_process_dead(pid)


class _ThisProcess:
    """The values of this process alone (no multiprocess folder)."""

    def collect(self):
        yield from REGISTRY.collect()


def registry(*extra) -> CollectorRegistry:
    """Build a registry of every process's values (or this one's), plus `extra` collectors."""
    built = CollectorRegistry(auto_describe=False)
    if multiproc_dir() is not None:
        multiprocess.MultiProcessCollector(built)
    else:
        built.register(_ThisProcess())
    for collector in extra:
        built.register(collector)
    return built


def render(*extra) -> tuple[bytes, str]:
    """Return the exposition text of every process's values, and its content type."""
    return generate_latest(registry(*extra)), CONTENT_TYPE_LATEST
