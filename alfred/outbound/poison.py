"""A send that crashes again and again (a bug, not Meta) is dead-lettered instead of re-driven."""

from __future__ import annotations

import logging

import redis

from alfred.outbound.pending import entry_id

log = logging.getLogger(__name__)

# As ingest's MAX_FAILURES: five crashes of the same message, each re-driven by the sweeper.
MAX_CRASHES = 5
# A crash count outlives any re-drive cycle, and is forgotten on its own a day later.
CRASH_TTL_S = 24 * 3600
CRASHED = "send_crashed"


def crash_key(message: dict) -> str:
    """Name the Redis counter of one message's crashes."""
    return f"alfred:outbound:crashes:{entry_id(message)}"


def count_crash(client: redis.Redis, sender, message: dict, exc: BaseException) -> bool:
    """Count a crash of this message's send; dead-letter it at MAX_CRASHES. True if it was."""
    key = crash_key(message)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, CRASH_TTL_S)
    crashes = pipe.execute()[0]
    named = f"{type(exc).__name__}: {exc}"[:500]
    log.error(
        "send.crashed",
        extra={
            "tenant_id": message.get("tenant_id"),
            "idempotency_key": message.get("idempotency_key"),
            "crashes": crashes,
            "error": named,
        },
    )
    if crashes < MAX_CRASHES:
        return False  # still journaled: the sweeper re-drives it when it falls due
    errors = [{"code": None, "title": type(exc).__name__, "message": named}]
    sender.dead_letter(message, reason=CRASHED, errors=errors)
    client.delete(key)  # a `dlq replay` starts counting afresh
    return True
