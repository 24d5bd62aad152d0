"""Outbound measurements: send_message throughput and enqueue-to-Graph latency, per worker pool."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import requests

from bench.payloads import TENANT_IDS, outbound_message, recipient
from bench.stack import TENANTS, Stack
from bench.stats import summary_ms

RECIPIENTS = 2000
FINAL = ("failed", "dead_lettered", "invalid")


def seed(stack: Stack) -> None:
    """Open the window of every bench recipient, for both tenants."""
    stack.seed_windows([recipient(i) for i in range(RECIPIENTS)])


def sim_stats(stack: Stack) -> dict:
    """Return the simulator's counters."""
    return requests.get(f"{stack.sim_url}/_sim/stats", timeout=5).json()


def sim_accepted(stack: Stack, prefix: str, limit: int) -> dict[str, float]:
    """Return {idempotency key: simulator receive time} of accepted sends with `prefix`."""
    data = requests.get(
        f"{stack.sim_url}/_sim/messages", params={"limit": limit}, timeout=30
    ).json()["data"]
    return {
        m["key"]: m["accepted_at"] for m in data if m.get("key") and m["key"].startswith(prefix)
    }


def failed_count(stack: Stack, prefix: str) -> int:
    """Count this run's messages the bridge recorded as failed, dead-lettered or invalid."""
    from sqlalchemy import func, select

    from alfred.db import get_engine
    from alfred.models import Message

    with get_engine(stack.database_url).connect() as connection:
        return int(
            connection.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.idempotency_key.like(f"{prefix}%"), Message.status.in_(FINAL))
            )
            or 0
        )


def enqueue(messages: list[dict], rate: float | None, deadline_s: float) -> list[dict]:
    """Call send_message.apply_async for each message, paced at `rate`/s or as fast as possible."""
    from alfred.outbound.tasks import send_message

    started = time.perf_counter()
    done: list[dict] = []

    def one(message: dict) -> None:
        message["enqueued_at"] = time.time()
        send_message.apply_async(args=[message])
        done.append(message)

    if rate is None:
        # A few threads: one publisher alone would measure the enqueue, not the workers.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, messages))
        return done
    for i, message in enumerate(messages):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() - started > deadline_s:
            break
        one(message)
    return done


def run(stack: Stack, label: str, count: int, rate: float | None, timeout_s: float) -> dict:
    """Enqueue `count` sends, wait for every outcome, and report rate, latency and losses."""
    prefix = f"{label}-{int(time.time() * 1000)}"
    before = sim_stats(stack)
    messages = [outbound_message(prefix, i, users=RECIPIENTS) for i in range(count)]
    started = time.time()
    sent = enqueue(messages, rate, deadline_s=count / rate + 10 if rate else timeout_s)
    enqueue_s = time.time() - started
    deadline = time.monotonic() + timeout_s
    accepted: dict[str, float] = {}
    failed = 0
    while time.monotonic() < deadline:  # bounded by timeout_s
        done = sim_stats(stack)["sends"]["accepted"] - before["sends"]["accepted"]
        failed = failed_count(stack, prefix)
        if done + failed >= len(sent):
            break
        time.sleep(0.25)
    accepted = sim_accepted(stack, prefix, limit=len(sent) * 2 + 1000)
    failed = failed_count(stack, prefix)
    after = sim_stats(stack)
    stamps = sorted(accepted.values())
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    latencies = [
        accepted[m["idempotency_key"]] - m["enqueued_at"]
        for m in sent
        if m["idempotency_key"] in accepted
    ]
    rejected = after["sends"]["rejected_total"] - before["sends"]["rejected_total"]
    duplicates = after["duplicates"]["extra_sends"] - before["duplicates"]["extra_sends"]
    return {
        "mode": f"paced {rate}/s" if rate else "max rate",
        "enqueued": len(sent),
        "enqueue_per_s": round(len(sent) / enqueue_s, 1) if enqueue_s else None,
        "accepted": len(accepted),
        "failed": failed,
        "graph_errors": rejected,
        "duplicates": duplicates,
        "lost": len(sent) - len(accepted) - failed,
        "sends_per_s": round((len(stamps) - 1) / span, 1) if span else None,
        "enqueue_to_graph": summary_ms(latencies),
    }


def reference(stack: Stack, count: int, concurrency: int = 32) -> dict:
    """Measure the simulator's raw capacity with a direct aiohttp loop (no bridge at all)."""
    return asyncio.run(_reference(stack, count, concurrency))


async def _reference(stack: Stack, count: int, concurrency: int) -> dict:
    answered = accepted = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    tag = f"ref-{int(time.time() * 1000)}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            nonlocal answered, accepted
            while not queue.empty():
                i = queue.get_nowait()
                message = outbound_message(tag, i, users=RECIPIENTS)
                tenant = TENANTS[message["tenant_id"]]
                body = {
                    "messaging_product": "whatsapp",
                    "to": message["to"],
                    "type": "text",
                    "text": message["text"],
                    "biz_opaque_callback_data": message["idempotency_key"],
                }
                url = f"{stack.sim_url}/v25.0/{tenant['phone_number_id']}/messages"
                headers = {"Authorization": f"Bearer {tenant['token']}"}
                async with http.post(url, json=body, headers=headers) as response:
                    await response.read()
                    answered += 1
                    accepted += response.status == 200

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=120)
        seconds = time.perf_counter() - started
    return {
        "requests": count,
        "answered_per_s": round(answered / seconds, 1),
        "accepted_per_s": round(accepted / seconds, 1),
        "note": f"{len(TENANT_IDS)} tenants at {TENANTS['home']['mps']} mps each: "
        "the simulator refuses (130429) whatever exceeds that",
    }
