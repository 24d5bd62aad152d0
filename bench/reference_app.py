"""The no-work reference: check the HMAC and XADD the raw body, as the seed's sketch does.

Served by the same gunicorn settings as `wsgi:app`, so the ratio of the two throughputs is
the cost of everything the bridge adds (journal, Celery publish, JSON check, metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import redis
from flask import Flask, request

app = Flask(__name__)
_SECRET = os.environ.get("META_APP_SECRET", "").encode()
_REDIS = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
STREAM = "bench-reference"


@app.post("/webhook")
def receive():
    """Answer 403 on a bad signature, else XADD the raw body and answer 200."""
    body = request.get_data(cache=False)
    given = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(_SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given, expected):
        return "bad signature", 403
    _REDIS.xadd(STREAM, {"payload": body})
    return "ok", 200


@app.get("/healthz")
def healthz():
    """Say the process is alive."""
    return "ok", 200
