"""Celery tasks of the journals: the sweeper, on beat's timer, when a worker starts, and when its
connection to Redis comes back.

The sweeper knows no package: each registers its journal and its re-drive from its own
tasks.py (alfred.journals.journal.register), and the worker imports every task module.
"""

from __future__ import annotations

import logging

from celery import bootsteps, shared_task
from celery.signals import worker_ready

from alfred.journals.sweeper import ON_START_MIN_AGE_S, sweep_all

log = logging.getLogger(__name__)


@shared_task(name="alfred.sweep_journals", ignore_result=True, bind=True)
def sweep_journals(self) -> dict[str, int]:
    """Re-drive journaled work whose task was lost."""
    return sweep_all(task_routes=self.app.conf.task_routes)


@worker_ready.connect
def _sweep_on_start(sender=None, **_kwargs) -> None:
    app = getattr(sender, "app", None)
    sweep_all(min_age=ON_START_MIN_AGE_S, task_routes=app.conf.task_routes if app else None)


class SweepOnReconnect(bootsteps.StartStopStep):
    """Re-drive the journals each time the worker's consumer comes back after losing Redis.

    A connection lost mid-load takes with it every task the worker held: kombu cannot put back
    what it had fetched (it logs "UNABLE TO RESTORE", Redis being gone), and a running task whose
    Redis calls fail cannot publish its own retry (Celery rejects it, requeue=False). An ingest
    task also held the batch it had popped off the ready list. All of it is still journaled, but
    only a sweep brings it back: without this step, the sweeper on beat's timer, after the due
    time (30 s + 10 s), and never where beat is not running. The consumer's blueprint restarts
    after a connection loss, so this step's start runs again once Redis answers; its first start
    is the first connection, which worker_ready's sweep already covers.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.connected_before = False

    def start(self, consumer) -> None:
        if not self.connected_before:
            self.connected_before = True
            return
        try:
            counts = sweep_all(
                min_age=ON_START_MIN_AGE_S, task_routes=consumer.app.conf.task_routes
            )
        except Exception:  # beat's periodic sweep is still there; never stop the consumer
            log.exception("journal.reconnect_sweep_failed")
            return
        log.warning("journal.reconnect_swept", extra={"redriven": counts})


def install(app) -> None:
    """Add the re-drive at reconnection to `app`'s worker consumer."""
    app.steps["consumer"].add(SweepOnReconnect)
