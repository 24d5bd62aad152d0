"""Backlogs read from Redis when the metrics port is scraped: streams, queues, journals.

Read at scrape time rather than kept as gauges, so they are exact whoever wrote the work and
whether or not a worker is alive to count it (a stopped worker is when a backlog matters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import redis
from prometheus_client.core import GaugeMetricFamily

from alfred.journals.journal import Journal, waiting_since
from alfred.streams import INGEST_STREAM, OUTBOUND_GROUP, OUTBOX_STREAM

# The journals of alfred/journal.py, by the names their modules give them.
JOURNALS = ("ingest", "outbound", "audit", "read")
# Celery's queues (celeryconfig.task_routes): kombu keeps each as a Redis list of its name.
QUEUES = ("ingest", "outbound", "alfred")


class BacklogCollector:
    """A prometheus_client collector of the backlogs; `alfred_redis_up 0` if Redis is away."""

    def __init__(self, client: Callable[[], redis.Redis]):
        self._client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the backlog gauges, read now."""
        up = GaugeMetricFamily("alfred_redis_up", "Whether the exporter reached Redis (1 or 0)")
        try:
            families = list(self._read(self._client()))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        streams = GaugeMetricFamily(
            "alfred_stream_length", "Entries in each Redis stream (XLEN)", labels=["stream"]
        )
        for stream in (INGEST_STREAM, OUTBOX_STREAM):
            streams.add_metric([stream], client.xlen(stream))
        yield streams
        pending = GaugeMetricFamily(
            "alfred_outbox_pending",
            "«alfred-outbox» entries read by the bridge's group and not yet acknowledged",
            labels=["group"],
        )
        try:
            count = client.xpending(OUTBOX_STREAM, OUTBOUND_GROUP)["pending"]
        except redis.ResponseError:
            count = 0  # no group yet: the bridge has not started
        pending.add_metric([OUTBOUND_GROUP], count)
        yield pending
        journals = GaugeMetricFamily(
            "alfred_journal_backlog", "Journaled work not yet done", labels=["journal"]
        )
        for name in JOURNALS:
            journals.add_metric([name], Journal(client, name).size())
        yield journals
        lengths = GaugeMetricFamily(
            "alfred_queue_length", "Celery tasks waiting in each queue", labels=["queue"]
        )
        ages = GaugeMetricFamily(
            "alfred_queue_oldest_age_seconds",
            "How long the oldest task of each queue has waited (0 when empty): the ingest lag",
            labels=["queue"],
        )
        for queue in QUEUES:
            lengths.add_metric([queue], client.llen(queue))
            since = waiting_since(client, queue)
            ages.add_metric([queue], max(0.0, now - since) if since is not None else 0.0)
        yield lengths
        yield ages
