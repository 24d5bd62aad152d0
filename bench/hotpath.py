"""Where the time goes: cProfile over POST /webhook (Flask test client) and process_delivery."""

from __future__ import annotations

import cProfile
import pstats
import time

from bench.payloads import inbound_body, signed
from bench.stack import Stack


def top(profile: cProfile.Profile, total_s: float, limit: int = 15) -> list[dict]:
    """Return the functions with the most own time, and their cumulative share of the total."""
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls": calls,
                "own_pct": round(100 * own / total_s, 1),
                "cumulative_pct": round(100 * cumulative / total_s, 1),
            }
        )
    rows.sort(key=lambda r: r["own_pct"], reverse=True)
    return rows[:limit]


def hot_paths(profile: cProfile.Profile, total_s: float, prefixes: tuple[str, ...]) -> list[dict]:
    """Return the cumulative share of named functions (ours and the libraries we call)."""
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_cc, calls, _own, cumulative, _callers) in stats.stats.items():
        where = f"{_short(filename)}:{line}({name})"
        if any(p in where for p in prefixes):
            rows.append(
                {
                    "function": where,
                    "calls": calls,
                    "cumulative_pct": round(100 * cumulative / total_s, 1),
                }
            )
    rows.sort(key=lambda r: r["cumulative_pct"], reverse=True)
    return rows[:25]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


WEBHOOK_PATHS = (
    "webhook.py",
    "receive.py",
    "journal.py",
    "apply_async",
    "send_task",
    "publish",
    "verify",
    "json/__init__",
    "metrics",
    "execute_command",
    "wsgi_app",
    "send_sent_event",
    "amqp.py",
)
INGEST_PATHS = (
    "alfred/ingest/",
    "alfred/messages/",
    "alfred/windows.py",
    "alfred/db.py",
    "alfred/streams.py",
    "alfred/journals/",
    "marshmallow",
    "sqlalchemy/orm/session.py",
    "execute_command",
    "psycopg",
    "metrics",
)


def profile_paths(stack: Stack, count: int) -> dict:
    """Profile `count` POSTs in-process, then `count` process_delivery calls on their journal."""
    from alfred import create_app, runtime
    from alfred.ingest.service import process_delivery

    stack.flush_redis()
    runtime.reset()
    client = create_app({"TESTING": True}).test_client()
    tag = f"prof.{int(time.time())}"
    bodies = [inbound_body(tag, i) for i in range(count)]
    headers = [signed(b) for b in bodies]
    client.post("/webhook", data=bodies[0], headers=headers[0])  # warm imports and pools
    web = cProfile.Profile()
    ids = []
    started = time.perf_counter()
    web.enable()
    for body, header in zip(bodies[1:], headers[1:], strict=True):
        ids.append(client.post("/webhook", data=body, headers=header).get_json()["delivery_id"])
    web.disable()
    web_s = time.perf_counter() - started

    settings, redis_client = runtime.settings(), runtime.redis_client()
    process_delivery(ids[0], settings=settings, client=redis_client)  # warm the engine
    ingest = cProfile.Profile()
    started = time.perf_counter()
    ingest.enable()
    for delivery_id in ids[1:]:
        process_delivery(delivery_id, settings=settings, client=redis_client)
    ingest.disable()
    ingest_s = time.perf_counter() - started
    stack.flush_redis()  # the published tasks would otherwise wait for the next worker
    return {
        "note": "cProfile in one process; profiling itself slows calls about 2x, so read shares",
        "webhook": {
            "requests": len(ids),
            "ms_per_request": round(1000 * web_s / len(ids), 3),
            "top_own_time": top(web, web_s),
            "cumulative": hot_paths(web, web_s, WEBHOOK_PATHS),
        },
        "process_delivery": {
            "deliveries": len(ids) - 1,
            "ms_per_delivery": round(1000 * ingest_s / max(1, len(ids) - 1), 3),
            "top_own_time": top(ingest, ingest_s),
            "cumulative": hot_paths(ingest, ingest_s, INGEST_PATHS),
        },
    }


SEND_PATHS = (
    "alfred/outbound/",
    "alfred/whatsapp/",
    "alfred/db.py",
    "alfred/tokens/",
    "requests/sessions.py",
    "marshmallow",
    "sqlalchemy/orm/session.py",
    "execute_command",
    "psycopg",
    "metrics",
)


def profile_send(stack: Stack, count: int) -> dict:
    """Profile `count` Sender.send calls in-process against the simulator (windows seeded)."""
    from alfred import runtime
    from alfred.outbound.tasks import sender
    from bench.payloads import outbound_message

    runtime.reset()
    sender.cache_clear()
    tag = f"profsend{int(time.time())}"
    messages = [outbound_message(tag, i) for i in range(count + 1)]
    sender().send(messages[0])  # warm the pools
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    outcomes = [sender().send(m).status for m in messages[1:]]
    profile.disable()
    total = time.perf_counter() - started
    return {
        "sends": count,
        "outcomes": {s: outcomes.count(s) for s in set(outcomes)},
        "ms_per_send": round(1000 * total / count, 3),
        "top_own_time": top(profile, total),
        "cumulative": hot_paths(profile, total, SEND_PATHS),
    }
