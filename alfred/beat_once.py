"""Beat's scheduler, firing each schedule entry once per period however many beats run.

Two machines that both run `beat` (a Fly app scaled to two VMs runs every process twice)
would otherwise publish every periodic task twice. Most of ours bear it (the sweeper claims
entries atomically, rotation holds a per-tenant lock and a per-week mark, the alert
evaluation a lock of its own), but the PII lifecycle would run twice at once, and any job
added later would have to remember to. So each firing first takes a Redis key named after the
entry, `SET NX` with an expiry of 90 % of the time to the entry's next run: the first beat to
come due fires, any other beat coming due within that window skips. Both beats stay active, so
when one dies the other fires the next period with no hand-over.
"""

from __future__ import annotations

import logging
import os
import socket

import redis
from celery.beat import PersistentScheduler

from alfred.redis_client import get_redis

log = logging.getLogger(__name__)

KEY_PREFIX = "alfred:beat:once:"
# Of the time to the entry's next run: short enough that the beat holding the key fires
# again next period, long enough that a second beat's firing a few seconds later is skipped.
HOLD_RATIO = 0.9


def hold_ms(entry) -> int:
    """Return how long a firing of `entry` keeps other beats from firing it, in ms."""
    schedule = entry.schedule
    remaining = schedule.remaining_estimate(schedule.now())
    return max(1, int(remaining.total_seconds() * 1000 * HOLD_RATIO))


class OnceScheduler(PersistentScheduler):
    """celery's file-backed scheduler, firing each entry only if no other beat just did."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.beat_id = f"{socket.gethostname()}-{os.getpid()}"

    def apply_entry(self, entry, producer=None):
        try:
            client = get_redis(self.app.conf.alfred_redis_url_secret)
            mine = client.set(KEY_PREFIX + entry.name, self.beat_id, nx=True, px=hold_ms(entry))
        except redis.RedisError as exc:
            # Redis is the broker too: a publish now would fail the same way.
            log.warning("beat.lock_unavailable", extra={"entry": entry.name, "error": str(exc)})
            return
        if not mine:
            log.info("beat.skipped", extra={"entry": entry.name, "beat": self.beat_id})
            return
        log.info("beat.fired", extra={"entry": entry.name, "beat": self.beat_id})
        super().apply_entry(entry, producer=producer)
