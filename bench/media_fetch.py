"""Fetch a 16 MB video from the simulator into the blob store; print throughput and peak RSS.

    .venv/bin/python bench/media_fetch.py [--size-mb 16] [--runs 5] [--s3] [--redis URL]

The real MediaFetcher (resolve, streamed download, size and SHA-256 checks, the blob store,
the row, media_stored) runs in this process; the simulator runs in a process of its own, so
the RSS measured is the fetcher's alone. `--s3` stores into moto's S3 server (started here)
instead of a folder. SQLite in a temp folder. Not a test: a figure for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "EAA-bench-home-token"  # long enough not to collide with the bytes' JSON (redaction)
TENANTS = {"home": {"phone_number_id": "110000000000001", "waba_id": "3100001", "token": TOKEN}}


def rss_mb() -> float:
    """Return this process's resident set size now, in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def start_simulator(port: int, env: dict) -> subprocess.Popen:
    """Run `python -m alfred simulator` and wait until it answers."""
    import requests

    process = subprocess.Popen(
        [sys.executable, "-m", "alfred", "simulator", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("the simulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=16.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="store into moto's S3 server")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    from tests.blobstores import S3_BUCKET, S3_CREDENTIALS, MotoS3, start_moto_server, stop
    from tests.conftest import free_port

    tmp = Path(tempfile.mkdtemp(prefix="media-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": args.redis,
        "DATABASE_URL": f"sqlite:///{tmp}/alfred.db",
        "ALFRED_VAR_DIR": str(tmp),
        "ALFRED_TENANTS": json.dumps(TENANTS),
        "GRAPH_API_URL": f"http://127.0.0.1:{port}",
        "BLOB_STORE_URL": (tmp / "blobs").as_uri(),
    }
    moto = None
    if args.s3:
        process, url = start_moto_server()
        moto = MotoS3(url, S3_BUCKET, process)
        moto.client().create_bucket(Bucket=S3_BUCKET)
        env.update(S3_CREDENTIALS, BLOB_STORE_URL=f"s3://{S3_BUCKET}/bench", S3_ENDPOINT_URL=url)
    os.environ.update(env)
    simulator = start_simulator(port, env)
    try:
        run(args, port)
    finally:
        stop(simulator)
        if moto:
            stop(moto.process)


def run(args, port: int) -> None:
    """Fetch `args.runs` videos, printing each run's figures."""
    import requests

    from alfred import runtime
    from alfred.blobstore import store_for
    from alfred.media.service import MediaFetcher, MediaJob
    from alfred.migrate import upgrade
    from alfred.whatsapp.graph import GraphClient

    upgrade(os.environ["DATABASE_URL"])
    settings = runtime.settings()
    fetcher = MediaFetcher(
        settings=settings, client=runtime.redis_client(), store=store_for(settings),
        graph=GraphClient(settings.graph_api_url, settings.graph_api_version),
    )  # fmt: skip
    size = int(args.size_mb * 2**20)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.002)

    rates = []
    for n in range(args.runs):
        spec = {"tenant": "home", "size": size, "mime_type": "video/mp4"}
        media = requests.post(f"http://127.0.0.1:{port}/_sim/media", json=spec, timeout=60).json()
        job = MediaJob("home", "110000000000001", f"wamid.bench{n}", media["id"], "video",
                       int(time.time()), {"id": media["id"]})  # fmt: skip
        baseline = peak[0] = rss_mb()
        stop.clear()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        outcome = fetcher.fetch(job)
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        if outcome.status != "stored":
            raise SystemExit(f"run {n + 1}: {outcome}")
        rates.append(size / 2**20 / elapsed)
        rise = peak[0] - baseline
        print(f"run {n + 1}: {size / 2**20:.0f} MB in {elapsed:.3f} s = {rates[-1]:.1f} MB/s; "
              f"RSS {baseline:.1f} MB before, peak {peak[0]:.1f} MB (+{rise:.1f})")  # fmt: skip
    store = "s3 (moto)" if args.s3 else "folder"
    print(f"{store}: median {sorted(rates)[len(rates) // 2]:.1f} MB/s over {args.runs} runs")


if __name__ == "__main__":
    main()
