"""Helpers shared by tests: Meta-shaped fixtures made fresh, and signed deliveries."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from alfred.whatsapp.signature import sign

FIXTURES = Path(__file__).parent / "data" / "webhooks"


def freshen(value, now: int):
    """Restamp every message/status `timestamp` and entry `time` as `now`, recursively."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "timestamp" and isinstance(item, str) and item.isdigit():
                out[key] = str(now)
            elif key == "time" and isinstance(item, int):
                out[key] = now
            else:
                out[key] = freshen(item, now)
        return out
    if isinstance(value, list):
        return [freshen(item, now) for item in value]
    return value


def fixture(name: str, *, fresh: bool = True, now: int | None = None) -> dict:
    """Load tests/data/webhooks/<name>.json, restamped to now unless fresh is False."""
    payload = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return freshen(payload, int(now if now is not None else time.time())) if fresh else payload


def body_of(payload: dict, *, escape: bool = False) -> bytes:
    """Serialise as Meta does: raw UTF-8, or with non-ASCII escaped as \\uXXXX."""
    return json.dumps(payload, ensure_ascii=escape).encode("utf-8")


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """Return the headers of a delivery signed with `secret`."""
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}


def task_arguments(raw: bytes) -> tuple[list, dict]:
    """Return the args and kwargs of a Celery task message as kombu's Redis transport lists it."""
    args, kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
    return args, kwargs
