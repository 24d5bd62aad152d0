"""Celery tasks of the token lifecycle: the weekly rotation, and the rotation a 190 asks for."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

from celery import shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from alfred import metrics, runtime
from alfred.tokens.rotation import RotationRefused, rotate_tokens, stored_expiry
from alfred.tokens.suspect import mark_suspect

log = logging.getLogger(__name__)

# A 190 asks for at most one rotation per tenant this often; the rotation's lock does the rest.
REQUEST_EVERY_S = 10
RETRY_BASE_S = {"expired": 2.0, "schedule": 60.0}
RETRY_CAP_S = {"expired": 300.0, "schedule": 3600.0}


def schedule_slot(now: datetime) -> str:
    """Name the weekly run `now` belongs to: the date of the last Monday 03:00 UTC."""
    start = now - timedelta(days=now.weekday())
    monday = start.replace(hour=3, minute=0, second=0, microsecond=0)
    if now < monday:
        monday -= timedelta(days=7)
    return monday.date().isoformat()


def retry_delay(reason: str, attempt: int) -> float:
    """Return the back-off before the next try of a failed rotation, with jitter."""
    base, cap = RETRY_BASE_S.get(reason, 60.0), RETRY_CAP_S.get(reason, 3600.0)
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


@shared_task(
    name="alfred.rotate_tokens",
    ignore_result=True,
    autoretry_for=(RedisError, OperationalError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=10,
)
def rotate_tokens_task(
    tenant: str | None = None, reason: str = "schedule", slot: str | None = None, attempt: int = 1
) -> dict:
    """Rotate every tenant's token (or one), retrying each failed tenant on its own."""
    settings = runtime.settings()
    if reason in ("schedule", "catch_up"):
        # The weekly run and the hourly catch-up share the week's slot: a run missed while
        # beat was down happens within the hour, and never twice.
        slot = slot or schedule_slot(datetime.now(UTC))
        reason = "schedule"
    tenants = [settings.tenants[tenant]] if tenant else None
    try:
        results = list(rotate_tokens(settings, runtime.redis_client(), tenants, slot=slot))
    except RotationRefused as exc:
        log.error("tokens.rotation_refused", extra={"reason": str(exc)})
        return {"refused": str(exc)}
    for result in results:
        if result.outcome == "failed" and result.retryable:
            rotate_tokens_task.apply_async(
                kwargs={"tenant": result.tenant_id, "reason": reason, "slot": slot,
                        "attempt": attempt + 1},
                countdown=retry_delay(reason, attempt),
            )  # fmt: skip
        if result.outcome == "skipped":
            # Keep each process's gauge current between rotations (the hourly catch-up).
            expires = stored_expiry(settings, result.tenant_id)
            if expires is not None:
                aware = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # SQLite
                metrics.TOKEN_EXPIRY.labels(result.tenant_id).set(aware.timestamp())
    return {r.tenant_id: r.outcome for r in results}


def report_expired(tenant_id: str) -> None:
    """Meta refused the tenant's token (190): mark it suspect and ask for a rotation."""
    mark_suspect(runtime.redis_client(), tenant_id)
    request_rotation(tenant_id)


def request_rotation(tenant_id: str) -> None:
    """Publish a rotation of the tenant's token, at most once per REQUEST_EVERY_S."""
    client = runtime.redis_client()
    if client.set(f"alfred:tokens:requested:{tenant_id}", 1, nx=True, ex=REQUEST_EVERY_S):
        log.warning("tokens.rotation_requested", extra={"tenant_id": tenant_id})
        rotate_tokens_task.apply_async(kwargs={"tenant": tenant_id, "reason": "expired"})
