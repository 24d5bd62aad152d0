"""Liveness and readiness; /metrics is not on the public port (it is on METRICS_PORT)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy import text

from alfred import runtime
from alfred.db import get_engine

bp = Blueprint("health", __name__)


def init_app(app: Flask) -> None:
    """Register the health and metrics routes."""
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz() -> Response:
    """Say the process is alive."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Say whether Redis and the database answer."""
    checks: dict[str, str] = {}
    settings = runtime.settings()
    try:
        runtime.redis_client().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


@bp.get("/metrics")
def no_metrics_here() -> tuple[Response, int]:
    """Answer 404: tenant names and counts are served only on METRICS_PORT, never publicly."""
    return jsonify(error="not_found", detail="metrics are served on METRICS_PORT only"), 404
