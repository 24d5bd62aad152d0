"""The PII lifecycle over generated messages: records/s, peak RSS, database lock per batch.

    .venv/bin/python -m bench.lifecycle [--messages 1000000] [--database-url URL] [--batch 1000]

Not a timed test: it prints figures (docs/privacy.md, Benchmark). Every message is older than
the hot window, so the whole table is archived and anonymised in one run. It runs on its own
SQLite file (default) or the PostgreSQL database given (which it empties first: use a scratch
one), a folder blob store in a temporary directory, and a private redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.stack import free_port, tool, wait_port

NOW = "2027-01-01T20:18:57+00:00"
CHUNK = 20_000


def generate(database_url: str, count: int) -> float:
    """Insert `count` messages of two tenants, spread over the 60 days before day 30."""
    from datetime import datetime

    from alfred.db import get_engine
    from alfred.models import Message

    start = time.perf_counter()
    first = datetime.fromisoformat(NOW) - timedelta(days=90)
    table = Message.__table__
    with get_engine(database_url).begin() as connection:
        connection.execute(table.delete())
    for base in range(0, count, CHUNK):
        rows = []
        for n in range(base, min(count, base + CHUNK)):
            at = first + timedelta(seconds=n * 60 * 86400 / count)
            phone = f"1555{n:07d}"
            rows.append({
                "tenant_id": "home" if n % 3 else "biz", "direction": "inbound",
                "wamid": f"wamid.bench{n}", "wa_id": phone, "user_id": f"US.{n:020d}",
                "username": f"user{n}", "type": "text", "body": f"words of message {n}",
                "payload": {"text": {"body": f"words of message {n}"}, "from": phone},
                "status": "received", "attempts": 0, "created_at": at, "updated_at": at,
            })  # fmt: skip
        with get_engine(database_url).begin() as connection:
            connection.execute(table.insert(), rows)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a scratch database (default: a new SQLite file)")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    port = free_port()
    redis = subprocess.Popen(
        [tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
        database_url = args.database_url or f"sqlite:///{work / 'alfred.db'}"
        os.environ.update(
            DATABASE_URL=database_url,
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            BLOB_STORE_URL=(work / "blobs").as_uri(),
            ALFRED_VAR_DIR=str(work / "var"),
            PII_HASH_KEY="bench-pii-hash-key-0123456789abcdef",
            ALFRED_ENCRYPTION_KEY=os.environ.get(
                "ALFRED_ENCRYPTION_KEY", "Rk9STk9UQVJFQUxLRVlGT1JCRU5DSE9OTFkwMDAwMDA="
            ),
        )
        from datetime import datetime

        from alfred import runtime
        from alfred.blobstore import store_for
        from alfred.lifecycle import service
        from alfred.migrate import upgrade

        upgrade(database_url)
        generated = generate(database_url, args.messages)
        settings = runtime.settings()
        started = time.perf_counter()
        report = service.run(
            settings, store=store_for(settings), client=runtime.redis_client(),
            now=datetime.fromisoformat(NOW), batch_size=args.batch,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        archived = sum(sum(r.archived.values()) for r in report.tenants.values())
        locks = sorted(sum(report.lock_seconds.values(), []))
        per_step = {
            name: {"n": len(v), "p50_ms": round(statistics.median(v) * 1000, 1),
                   "max_ms": round(max(v) * 1000, 1)}
            for name, v in report.lock_seconds.items()
        }  # fmt: skip
        blob_bytes = sum(p.stat().st_size for p in (work / "blobs").rglob("*") if p.is_file())
        figures = {
            "database": database_url.split(":", 1)[0],
            "messages": args.messages,
            "batch": args.batch,
            "generate_s": round(generated, 1),
            "lifecycle_s": round(elapsed, 1),
            "records_per_s": round(archived / elapsed),
            "archived": archived,
            "archives": sum(r.archives_written for r in report.tenants.values()),
            "archive_mb": round(blob_bytes / 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "transactions": len(locks),
            "lock_ms_p50": round(statistics.median(locks) * 1000, 1),
            "lock_ms_p95": round(locks[int(len(locks) * 0.95)] * 1000, 1),
            "lock_ms_max": round(locks[-1] * 1000, 1),
            "lock_per_step": per_step,
            "ok": report.ok,
        }
        print(json.dumps(figures))
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    main()
