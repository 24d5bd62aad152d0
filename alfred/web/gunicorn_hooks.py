"""gunicorn hooks and shutdown of the web process, imported by the repo's gunicorn.conf.py.

The bind, workers and threads stay on the command line (Procfile, fly.toml), where they are
tuned.
"""

from __future__ import annotations

# On SIGTERM gunicorn stops accepting, lets in-flight requests finish for up to this long,
# then kills its workers: under fly.toml's kill_timeout (30 s), so Fly never SIGKILLs first.
graceful_timeout = 20


def post_worker_init(_worker) -> None:
    """In each worker, once booted: heartbeat as `web` and serve the metrics port if free.

    Never in the master: it forks workers at any time (a crash, a recycle), and a thread of
    ours holding a lock (the metrics values', Redis's) at the fork leaves the new worker's
    copy of it locked for ever: that worker hangs on its first request.
    """
    from alfred.operations import exporter

    exporter.start("web")


def child_exit(_server, worker) -> None:
    """In the master, when a worker exited: drop that worker's live gauges."""
    from alfred import metrics

    metrics.mark_process_dead(worker.pid)
