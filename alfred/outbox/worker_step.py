"""`celery worker --outbox`: the outbox bridge on a thread of the worker, not a process of its own.

The bridge is I/O-bound (XREADGROUP, then one publish per entry), so a whole interpreter for
it is 60 MB of PSS spent on waiting (docs/benchmarks.md): in the worker it costs a thread.
The worker starts it once its pool is up and stops it first at shutdown, so no entry is read
that the worker could no longer enqueue. Each worker's bridge is a consumer of its own in the
group (hostname-pid), so two workers with --outbox share the stream as two bridges would.
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps
from click import Option

log = logging.getLogger(__name__)

OPTION = Option(
    ["--outbox"],
    is_flag=True,
    default=False,
    help="Also run the «alfred-outbox» bridge, on a thread of this worker.",
)
STOP_WAIT_S = 5.0  # the bridge blocks on XREADGROUP for at most block_ms (1 s)


class OutboxBridgeStep(bootsteps.StartStopStep):
    """Run alfred.outbox.bridge.run_bridge on a thread while the worker runs."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, outbox: bool = False, **kwargs):
        super().__init__(worker, **kwargs)
        self.enabled = bool(outbox)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, worker) -> None:
        from alfred.outbox.bridge import run_bridge

        self.thread = threading.Thread(
            target=run_bridge, args=(self.stopping,), name="outbox-bridge", daemon=True
        )
        self.thread.start()

    def stop(self, worker) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(STOP_WAIT_S)
            if self.thread.is_alive():
                log.warning("outbox.stop_timeout", extra={"waited_s": STOP_WAIT_S})

    terminate = stop


def install(app) -> None:
    """Add the step and its --outbox option to `app`'s worker."""
    app.user_options["worker"].add(OPTION)
    app.steps["worker"].add(OutboxBridgeStep)
