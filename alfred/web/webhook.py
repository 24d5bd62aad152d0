"""GET /webhook (Meta's handshake) and POST /webhook (verified, journaled, enqueued)."""

from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from alfred import MAX_WEBHOOK_BYTES, metrics, runtime
from alfred.db import session_scope
from alfred.ingest import quarantine
from alfred.ingest.limits import Refused, parse_delivery
from alfred.ingest.receive import (
    accept_delivery,
    ingest_journal,
    publish_ingest,
    tenants_at_the_edge,
)
from alfred.journals.journal import BacklogFull
from alfred.redis_client import ReplicasBehind
from alfred.web.body import BodyRefused, read_body
from alfred.whatsapp.signature import verify

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)


def init_app(app: Flask) -> None:
    """Register the webhook routes."""
    app.register_blueprint(bp)
    app.register_error_handler(RequestEntityTooLarge, _too_large)


def _refuse(status: int, outcome: str, why: str, **fields) -> Response:
    metrics.WEBHOOK_REQUESTS.labels(outcome).inc()
    log.warning(
        "webhook.refused", extra={"status": status, "outcome": outcome, "why": why, **fields}
    )
    response = jsonify(error=outcome, detail=why)
    response.status_code = status
    return response


def _too_large(_exc: RequestEntityTooLarge) -> Response:
    return _refuse(
        413,
        "too_large",
        f"body over {request.max_content_length} bytes",
        content_length=request.content_length,
    )


@bp.get("/webhook")
def handshake() -> Response | tuple[str, int, dict]:
    """Answer Meta's subscription handshake with the challenge when the token matches."""
    expected = runtime.settings().verify_token
    mode = request.args.get("hub.mode")
    token = request.args.get("hub.verify_token", "")
    challenge = request.args.get("hub.challenge")
    if expected is None:
        return _refuse(403, "handshake_refused", "META_VERIFY_TOKEN is not configured")
    if mode != "subscribe" or challenge is None:
        return _refuse(403, "handshake_refused", "hub.mode must be subscribe, with hub.challenge")
    if not hmac.compare_digest(token.encode(), expected.reveal().encode()):
        return _refuse(403, "handshake_refused", "hub.verify_token does not match")
    metrics.WEBHOOK_REQUESTS.labels("handshake").inc()
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/webhook")
def receive() -> Response:
    """Verify a delivery's signature, make it durable, enqueue it; 200 only once all is done."""
    received_at = time.time()
    started = time.perf_counter()
    settings = runtime.settings()
    if not settings.app_secrets:
        return _refuse(403, "no_app_secret", "META_APP_SECRET is not configured")
    try:
        body = read_body(
            request.environ,
            max_bytes=request.max_content_length or MAX_WEBHOOK_BYTES,
            deadline_s=settings.webhook_body_timeout_s,
        )
    except BodyRefused as exc:
        response = _refuse(
            exc.status, exc.outcome, exc.detail, content_length=request.content_length
        )
        response.headers["Connection"] = "close"  # the rest of the body is never read
        return response
    header = request.headers.get("X-Hub-Signature-256")
    if not verify(body, header, settings.app_secrets):
        why = "missing signature" if not header else "signature does not match"
        return _refuse(403, "bad_signature", why, bytes=len(body))
    if request.mimetype != "application/json":
        return _refuse(
            415, "bad_content_type", f"content type {request.mimetype!r}, expected application/json"
        )
    try:
        payload = parse_delivery(body)
    except Refused as exc:
        # Signed but not what Meta sends (cut short, garbled, NaN, nested too deep, too many
        # items): keep it for the record, and answer non-200 so Meta retries it whole.
        try:
            with session_scope(settings.database_url) as session:
                quarantine.hold_refused(
                    session, body, reason=exc.reason, detail=exc.detail, received_at=received_at
                )
        except Exception:
            log.exception("webhook.quarantine_failed")
        return _refuse(exc.status, exc.reason, exc.detail)
    tenants, unknown = tenants_at_the_edge(payload, settings)
    if unknown:
        # Accepted all the same: the worker quarantines these events, replayable once the
        # number is configured. Nothing Meta handed over is dropped.
        metrics.WEBHOOK_REQUESTS.labels("unknown_number").inc()
        log.warning(
            "webhook.unknown_number",
            extra={"numbers": sorted(unknown)[:10], "tenants": sorted(tenants)},
        )
    try:
        delivery_id = accept_delivery(
            body,
            received_at=received_at,
            journal=ingest_journal(runtime.redis_client()),
            publish=publish_ingest,
            max_backlog=settings.ingest_max_backlog,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )
    except BacklogFull as exc:
        # Back-pressure: the workers are this far behind. Meta keeps the delivery and retries
        # it (for up to 7 days), which is cheaper than holding it here without bound.
        response = _refuse(503, "backlog_full", str(exc), limit=exc.limit)
        response.headers["Retry-After"] = "30"
        return response
    except ReplicasBehind as exc:
        # Held by the master only: a failover now could lose it, and a 200 tells Meta never
        # to send it again. A 503 costs a duplicate, which ingest drops (REDIS_WAIT_REPLICAS).
        return _refuse(503, "replicas_behind", f"not yet on the replicas: {exc}")
    except Exception as exc:  # Redis or the broker: Meta must retry, so never answer 200.
        return _refuse(503, "unavailable", f"could not enqueue: {type(exc).__name__}")
    metrics.WEBHOOK_REQUESTS.labels("accepted").inc()
    metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    return jsonify(status="accepted", delivery_id=delivery_id)
