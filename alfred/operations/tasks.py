"""Celery tasks of operations (alert evaluation, on beat's schedule) and worker metrics hooks."""

from __future__ import annotations

import os

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from alfred import metrics, runtime
from alfred.operations.notifier import evaluate_once


@shared_task(name="alfred.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> list[str]:
    """Evaluate the alert conditions and page PagerDuty on what changed."""
    ops = runtime.settings().ops
    if not ops.alert_notifier:
        return []
    return sorted(evaluate_once(runtime.redis_client(), ops, ops.alert_every_s) or {})


def _forks(consumer) -> bool:
    return "prefork" in type(getattr(consumer, "pool", None)).__module__


@worker_ready.connect
def _export_metrics(sender=None, **_kwargs) -> None:
    # The worker's main process, once it consumes: heartbeat as `worker`, serve the port if
    # free. Not where it forks children (prefork): a thread of ours holding a lock at the fork
    # would leave the child's copy locked for ever. Those children export instead.
    if not _forks(sender):
        from alfred.operations import exporter

        exporter.start("worker")


@worker_process_init.connect
def _export_metrics_from_child(**_kwargs) -> None:
    from alfred.operations import exporter

    exporter.start("worker")


@worker_process_shutdown.connect
def _forget_child(pid: int | None = None, **_kwargs) -> None:
    # A prefork child exiting (recycled, or at shutdown): drop its live gauges.
    metrics.mark_process_dead(pid or os.getpid())
