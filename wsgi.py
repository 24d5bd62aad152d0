"""The WSGI entry point: `gunicorn wsgi:app` (with `--preload`, imported once in the master)."""

import gc

from alfred import create_app

app = create_app()

# Under `gunicorn --preload` this runs in the master, just before it forks the workers. Frozen
# objects are never scanned by the collector, so the workers' collections never write to (and
# so never copy) the pages they share with the master: web PSS 140 -> 100 MB under load
# (docs/benchmarks.md, Memory). Without --preload it only spares each worker some GC work.
gc.freeze()
