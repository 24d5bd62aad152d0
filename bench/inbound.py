"""Inbound measurements: POSTs accepted per second (wrk), drain rate, webhook-to-stream latency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import accounting
from bench.payloads import inbound_body, sign
from bench.stack import Stack
from bench.stats import medians, summary_ms

INGEST_STREAM = "alfred-ingest"


def ensure_wrk() -> tuple[str | None, str]:
    """Return wrk's path, installing Debian's package when missing; else None and why."""
    if shutil.which("wrk"):
        return shutil.which("wrk"), "wrk found"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        for argv in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"]):
            subprocess.run(argv, capture_output=True, timeout=300, check=False)
            if shutil.which("wrk"):
                return shutil.which("wrk"), "wrk installed with apt-get"
        subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, timeout=300)
        if shutil.which("wrk"):
            return shutil.which("wrk"), "wrk installed with apt-get (after apt-get update)"
    return None, "wrk unavailable: the aiohttp sender at full concurrency measured instead"


def write_bodies(path: Path, tag: str, count: int) -> None:
    """Write `count` signed bodies, one `signature<TAB>body` a line, for wrk_post.lua."""
    now = time.time()
    with path.open("wb") as out:
        for i in range(count):
            body = inbound_body(tag, i, now=now)
            out.write(sign(body).encode() + b"\t" + body + b"\n")


def run_wrk(
    wrk: str, url: str, bodies: Path, connections: int, duration_s: float, threads: int = 2
) -> dict:
    """Run wrk against POST /webhook and return req/s, non-2xx and latency percentiles."""
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_THREADS": str(threads)}
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(max(connections, threads)),
        "-d",
        f"{int(duration_s)}s",
        "--timeout",
        "5s",
        "-s",
        str(Path(__file__).with_name("wrk_post.lua")),
        url,
    ]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line.split(" ", 1)[1])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "connections": connections,
        "requests": raw["requests"],
        "req_per_s": round(raw["requests"] / seconds, 1),
        "ok_per_s": round((raw["requests"] - raw["non2xx"]) / seconds, 1),
        "non2xx": raw["non2xx"],
        "socket_errors": errors,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
    }


@dataclass
class SendResult:
    """What a sender saw from the client side."""

    sent: int = 0
    ok: int = 0
    non2xx: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the counts, the achieved rate and the client-side latency summary."""
        return {
            "sent": self.sent,
            "ok": self.ok,
            "non2xx": self.non2xx,
            "errors": self.errors,
            "achieved_per_s": round(self.sent / self.seconds, 1) if self.seconds else None,
            "client": summary_ms(self.latencies_s),
        }


async def _send(
    make: Callable[[int], bytes],
    url: str,
    count: int,
    rate: float | None,
    inflight: int,
    deadline_s: float,
) -> SendResult:
    """POST `count` bodies: on a fixed schedule at `rate`/s, or as fast as `inflight` allows."""
    result = SendResult()
    gate = asyncio.Semaphore(inflight)
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(i: int, scheduled: float) -> None:
            body = make(i)
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        result.ok += 1
                    else:
                        result.non2xx += 1
            except (TimeoutError, aiohttp.ClientError):
                result.errors += 1
            finally:
                # Measured from the scheduled moment: a server that stalls is not hidden.
                result.latencies_s.append(time.perf_counter() - scheduled)
                gate.release()

        started = time.perf_counter()
        stop_at = started + deadline_s
        tasks = []
        for i in range(count):
            scheduled = started + i / rate if rate else time.perf_counter()
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() > stop_at:
                break
            await gate.acquire()
            result.sent += 1
            tasks.append(asyncio.create_task(post(i, scheduled if rate else time.perf_counter())))
        result.seconds = time.perf_counter() - started
        if tasks:
            await asyncio.wait(tasks, timeout=15)
    return result


def send(
    make: Callable[[int], bytes],
    url: str,
    count: int,
    *,
    rate: float | None = None,
    inflight: int = 256,
    deadline_s: float = 120.0,
) -> SendResult:
    """Run the asyncio sender to completion (bounded by count and by deadline_s)."""
    return asyncio.run(_send(make, url, count, rate, inflight, deadline_s))


def last_id(client) -> str:
    """Return the id of the newest «alfred-ingest» entry, or 0-0."""
    newest = client.xrevrange(INGEST_STREAM, count=1)
    return newest[0][0].decode() if newest else "0-0"


def entries_after(client, after: str, prefix: str) -> list[tuple[float, float]]:
    """Return (received_at, entry_ms/1000) of the message entries whose wamid has `prefix`."""
    found: list[tuple[float, float]] = []
    cursor = f"({after}"
    for _ in range(10_000):  # bounded: 10,000 pages of 1,000
        page = client.xrange(INGEST_STREAM, min=cursor, count=1000)
        if not page:
            break
        for entry_id, fields in page:
            payload = json.loads(fields[b"payload"])
            if payload.get("event") == "message" and str(payload.get("id", "")).startswith(prefix):
                found.append((float(payload["received_at"]), int(entry_id.split(b"-")[0]) / 1000))
        cursor = "(" + page[-1][0].decode()
    return found


def stream_entries(client, after: str, prefix: str) -> list[tuple[str, float]]:
    """Return (wamid, entry time) of each «alfred-ingest» message entry with `prefix`."""
    found: list[tuple[str, float]] = []
    cursor = f"({after}"
    for _ in range(10_000):  # bounded: 10,000 pages of 1,000
        page = client.xrange(INGEST_STREAM, min=cursor, count=1000)
        if not page:
            break
        for entry_id, fields in page:
            payload = json.loads(fields[b"payload"])
            wamid = str(payload.get("id", ""))
            if payload.get("event") == "message" and wamid.startswith(prefix):
                found.append((wamid, int(entry_id.split(b"-")[0]) / 1000))
        cursor = "(" + page[-1][0].decode()
    return found


def ledger(client, prefix: str, accepted: int, after: str = "0-0") -> dict:
    """Account for the deliveries a run's web accepted (bench/accounting.py: journal first)."""
    return accounting.deliveries(
        client, prefix, accepted, lambda: [w for w, _ in stream_entries(client, after, prefix)]
    )


def wait_entries(
    client, base_len: int, after: str, prefix: str, expected: int, timeout_s: float
) -> list:
    """Wait (polling XLEN, cheap) until `expected` entries joined `base_len`, then read them."""
    deadline = time.monotonic() + timeout_s
    while int(client.xlen(INGEST_STREAM)) < base_len + expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return entries_after(client, after, prefix)


def peak_accept(
    stack: Stack, wrk: str | None, connections: list[int], duration_s: float, repeats: int
) -> dict:
    """Measure POSTs accepted/s of our web process and of the no-work reference, interleaved."""
    runs: dict[str, dict[int, list[dict]]] = {"ours": {}, "reference": {}}
    bodies = stack.tmp / "bodies.tsv"
    apps = {"ours": ("wsgi:app", "web"), "reference": ("bench.reference_app:app", "reference")}
    for repeat in range(repeats):
        for label, (app, name) in apps.items():
            stack.start_web(app, name=name)
            try:
                for conns in connections:
                    stack.flush_redis()  # no worker runs: drop the queued backlog between runs
                    tag = f"peak{repeat}{label[0]}{conns}.{int(time.time())}"
                    if wrk:
                        write_bodies(bodies, tag, int(4000 * duration_s) + 1000)
                        run = run_wrk(wrk, f"{stack.web_url}/webhook", bodies, conns, duration_s)
                    else:
                        run = _fallback_peak(stack, tag, conns, duration_s)
                    runs[label].setdefault(conns, []).append(run)
            finally:
                stack.stop(name)
    stack.flush_redis()
    table = {
        label: {str(c): {**medians(rs), "runs": rs} for c, rs in by_conn.items()}
        for label, by_conn in runs.items()
    }
    best = {
        label: max((v["ok_per_s"] or 0) for v in by_conn.values())
        for label, by_conn in table.items()
    }
    return {
        "tool": "wrk" if wrk else "aiohttp",
        "by_connections": table,
        "ours_peak_ok_per_s": best["ours"],
        "reference_peak_ok_per_s": best["reference"],
        "ratio": round(best["ours"] / best["reference"], 3) if best["reference"] else None,
    }


def _fallback_peak(stack: Stack, tag: str, conns: int, duration_s: float) -> dict:
    """Without wrk: as many POSTs as `conns` in flight allow, for duration_s."""
    now = time.time()
    result = send(
        lambda i: inbound_body(tag, i, now=now),
        f"{stack.web_url}/webhook",
        10**6,
        inflight=conns,
        deadline_s=duration_s,
    )
    client = result.as_dict()["client"]
    return {
        "connections": conns,
        "requests": result.sent,
        "req_per_s": round(result.sent / result.seconds, 1),
        "ok_per_s": round(result.ok / result.seconds, 1),
        "non2xx": result.non2xx,
        "socket_errors": result.errors,
        "p50_ms": client["p50_ms"],
        "p90_ms": None,
        "p99_ms": client["p99_ms"],
    }


def drain(stack: Stack, pool: str, concurrency: int, count: int, timeout_s: float) -> dict:
    """Queue `count` deliveries with no worker, then start one and time the stream filling."""
    stack.flush_redis()
    client = stack.redis()
    tag = f"drain.{pool}.{int(time.time() * 1000)}"
    now = time.time()
    sent = send(lambda i: inbound_body(tag, i, now=now), f"{stack.web_url}/webhook", count)
    started = time.time()
    stack.start_worker(pool, concurrency)
    try:
        found = wait_entries(client, 0, "0-0", f"wamid.{tag}.", sent.ok, timeout_s)
    finally:
        stack.stop("worker")
    stamps = sorted(t for _, t in found)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    tally = ledger(client, f"wamid.{tag}.", sent.ok)
    return {
        "pool": f"{pool} -c {concurrency}",
        "queued": sent.ok,
        "reached_stream": len(found),
        "pending": tally["pending"],
        "lost": tally["lost"],
        "duplicates": tally["duplicates"],
        "missing": tally["pending"] + tally["lost"],
        "deliveries_per_s": round((len(stamps) - 1) / span, 1) if span else None,
        "worker_start_to_last_s": round(stamps[-1] - started, 2) if stamps else None,
    }


def paced(stack: Stack, rate: float, duration_s: float, label: str) -> dict:
    """Send at a fixed rate with the worker running; report webhook-to-stream latency."""
    client = stack.redis()
    tag = f"{label}.{int(time.time() * 1000)}"
    start = last_id(client)
    base_len = int(client.xlen(INGEST_STREAM))
    count = int(rate * duration_s)
    sent = send(
        lambda i: inbound_body(tag, i),
        f"{stack.web_url}/webhook",
        count,
        rate=rate,
        deadline_s=duration_s + 5,
    )
    at_end = int(client.xlen(INGEST_STREAM)) - base_len
    found = wait_entries(client, base_len, start, f"wamid.{tag}.", sent.ok, timeout_s=30)
    latencies = [max(0.0, entry - received) for received, entry in found]
    tally = ledger(client, f"wamid.{tag}.", sent.ok, start)
    out = {
        "rate": rate,
        **sent.as_dict(),
        "backlog_at_end": sent.ok - at_end,
        "reached_stream": len(found),
        # Not in the stream when counted: still journaled (pending) or gone (lost).
        "pending": tally["pending"],
        "lost": tally["lost"],
        "duplicates": tally["duplicates"],
        "missing": tally["pending"] + tally["lost"],
        "stream": summary_ms(latencies),
    }
    out["error_pct"] = round(100 * (sent.non2xx + sent.errors) / max(1, sent.sent), 3)
    return out


def holds(run: dict) -> bool:
    """Say whether a rate holds: p95 <= 1 s, no growing backlog, < 1 % errors, nothing lost."""
    p95 = run["stream"]["p95_ms"]
    return (
        p95 is not None
        and p95 <= 1000
        and run["backlog_at_end"] <= max(10, run["rate"])
        and run["error_pct"] < 1
        and run["missing"] == 0
        and (run["achieved_per_s"] or 0) >= 0.9 * run["rate"]
    )


def step_up(stack: Stack, rates: list[float], duration_s: float) -> dict:
    """Raise the paced rate step by step until one does not hold; return every step."""
    steps = []
    best = None
    for rate in rates:
        run = paced(stack, rate, duration_s, f"step{int(rate)}")
        run["holds"] = holds(run)
        steps.append(run)
        if not run["holds"]:
            break
        best = run
        with contextlib.suppress(Exception):
            time.sleep(1)  # let the statuses and the pool settle between steps
    return {"steps": steps, "highest_holding": best}
