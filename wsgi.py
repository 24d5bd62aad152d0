"""The WSGI entry point: `gunicorn wsgi:app` (with `--preload`, imported once in the master)."""

import gc
import sys

from alfred import create_app, runtime
from alfred.config import ConfigError
from alfred.ingest.receive import prepare_publishing

try:
    # Read the settings now: a malformed ALFRED_TENANTS stops the web at start, in one line,
    # instead of answering 500 to every request.
    runtime.settings()
except ConfigError as exc:
    print(f"error: configuration: {exc}", file=sys.stderr)
    sys.exit(2)
app = create_app()
# Celery's router and kombu's transport, built here once and shared, instead of in each worker
# on its first delivery (docs/benchmarks.md, What each design option measured).
prepare_publishing()

# Under `gunicorn --preload` this runs in the master, just before it forks the workers. Frozen
# objects are never scanned by the collector, so the workers' collections never write to (and
# so never copy) the pages they share with the master: web PSS 140 -> 100 MB under load
# (docs/benchmarks.md, Memory). Without --preload it only spares each worker some GC work.
gc.freeze()
