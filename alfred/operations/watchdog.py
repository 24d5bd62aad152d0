"""Tasks that run too long: seen, logged and counted, since the threads pool cannot kill them.

The Procfile's worker runs `-P threads`, which enforces no time limit (a thread cannot be
killed; celeryconfig.py). Every blocking call a task makes has its own timeout instead: a
Graph call 3.05 s to connect and 10 s to read, Redis 5 s, PostgreSQL statements 30 s, so a
send that retries inline stays well under a minute. A task still running after OVERRUN_S is
therefore stuck somewhere those timeouts do not reach (a lock, a loop, a library that
ignores its timeout): the watchdog logs `task.overrun` once with its name and id, counts it
in alfred_task_overruns_total{task}, and keeps alfred_task_oldest_running_seconds current,
so an operator sees a hung thread before the pool runs out of them. It does not stop it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from alfred import metrics

log = logging.getLogger(__name__)

# Past every timeout a task's calls have (above), with room for a few inline retries.
OVERRUN_S = 60.0
CHECK_EVERY_S = 5.0


class Watchdog:
    """The tasks running in this process, since when, and which overran already."""

    def __init__(self, bound_s: float = OVERRUN_S, clock: Callable[[], float] = time.monotonic):
        self.bound_s = bound_s
        self.clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float]] = {}
        self._reported: set[str] = set()

    def started(self, task_id: str, name: str) -> None:
        """A task began (Celery's task_prerun)."""
        with self._lock:
            self._running[task_id] = (name, self.clock())

    def finished(self, task_id: str) -> None:
        """A task ended, however (Celery's task_postrun)."""
        with self._lock:
            self._running.pop(task_id, None)
            self._reported.discard(task_id)

    def check(self) -> list[tuple[str, str, float]]:
        """Report each task past the bound once; return (id, name, seconds) of the new ones."""
        now = self.clock()
        with self._lock:
            ages = [
                (task_id, name, now - since) for task_id, (name, since) in self._running.items()
            ]
            fresh = [a for a in ages if a[2] > self.bound_s and a[0] not in self._reported]
            self._reported.update(task_id for task_id, _, _ in fresh)
        metrics.TASK_OLDEST_RUNNING.set(max((age for _, _, age in ages), default=0.0))
        for task_id, name, age in fresh:
            metrics.TASK_OVERRUNS.labels(name).inc()
            log.warning(
                "task.overrun",
                extra={"task": name, "task_id": task_id, "running_s": round(age, 1),
                       "bound_s": self.bound_s},
            )  # fmt: skip
        return fresh


_watchdog = Watchdog()
_thread: dict[int, threading.Thread] = {}


def _loop(watchdog: Watchdog) -> None:
    while True:
        time.sleep(CHECK_EVERY_S)
        try:
            watchdog.check()
        except Exception:  # the watchdog must never take the worker down
            log.exception("task.watchdog_failed")


def on_task_prerun(task_id: str | None = None, task=None, **_kwargs) -> None:
    """Celery's task_prerun: note the task, and start this process's check thread once."""
    pid = os.getpid()  # a prefork child runs its tasks, and needs a thread, of its own
    if pid not in _thread:
        thread = threading.Thread(target=_loop, args=(_watchdog,), daemon=True, name="watchdog")
        _thread[pid] = thread
        thread.start()
    _watchdog.started(str(task_id), getattr(task, "name", "?"))


def on_task_postrun(task_id: str | None = None, **_kwargs) -> None:
    """Celery's task_postrun: the task is done."""
    _watchdog.finished(str(task_id))
