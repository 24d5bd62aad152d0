"""Celery tasks of the journals: the sweeper, on beat's timer and when a worker starts.

The sweeper knows no package: each registers its journal and its re-drive from its own
tasks.py (alfred.journals.journal.register), and the worker imports every task module.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from alfred.journals.sweeper import ON_START_MIN_AGE_S, sweep_all


@shared_task(name="alfred.sweep_journals", ignore_result=True, bind=True)
def sweep_journals(self) -> dict[str, int]:
    """Re-drive journaled work whose task was lost."""
    return sweep_all(task_routes=self.app.conf.task_routes)


@worker_ready.connect
def _sweep_on_start(sender=None, **_kwargs) -> None:
    app = getattr(sender, "app", None)
    sweep_all(min_age=ON_START_MIN_AGE_S, task_routes=app.conf.task_routes if app else None)
