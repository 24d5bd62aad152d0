"""The Celery application: `celery -A alfred.celery_app worker|beat`."""

from __future__ import annotations

import gc
import os
import sys

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init

from alfred.config import REPO_ROOT
from alfred.journals.tasks import install as install_reconnect_sweep
from alfred.logs import configure_celery_logging
from alfred.operations import watchdog
from alfred.outbox.worker_step import install as install_outbox_step

if str(REPO_ROOT) not in sys.path:
    # celeryconfig.py sits at the repository root (CONTRACT.md), beside wsgi.py.
    sys.path.insert(0, str(REPO_ROOT))

celery = Celery(
    "alfred",
    include=[
        "alfred.ingest.tasks",
        "alfred.outbound.tasks",
        "alfred.journals.tasks",
        "alfred.media.tasks",
        "alfred.tokens.tasks",
        "alfred.lifecycle.tasks",
        "alfred.operations.tasks",
    ],
)
celery.config_from_object("celeryconfig")
app = celery
# The worker's logs, Celery's own included, as the same JSON lines as every other process.
setup_logging.connect(configure_celery_logging)
install_outbox_step(celery)  # `celery worker --outbox` runs the outbox bridge on a thread
install_reconnect_sweep(celery)  # a worker that loses Redis re-drives what it held, once back
# A task that overruns every timeout it has is logged and counted, since no pool we ship
# kills it (alfred/operations/watchdog.py).
task_prerun.connect(watchdog.on_task_prerun)
task_postrun.connect(watchdog.on_task_postrun)


@worker_init.connect
def _refuse_without_key(**_kwargs) -> None:
    # A server database with no ALFRED_ENCRYPTION_KEY: stop here and say why, rather than
    # make a key of this machine's own that no other machine can read.
    from alfred import runtime
    from alfred.tokens.store import check_key

    check_key(runtime.settings())


@worker_init.connect
def _freeze_shared_heap(**_kwargs) -> None:
    # Prefork children share the parent's modules copy-on-write. The collector's passes
    # write to every object they visit, copying each page into each child; objects frozen
    # before the fork are never visited. Threads pools lose nothing by it.
    import alfred.ingest.tasks  # noqa: F401 - the task modules, imported before the fork
    import alfred.journals.tasks  # noqa: F401
    import alfred.media.tasks  # noqa: F401
    import alfred.outbound.tasks  # noqa: F401
    import alfred.tokens.tasks  # noqa: F401

    gc.collect()
    gc.freeze()


@worker_init.connect
def _refuse_a_bad_configuration(**_kwargs) -> None:
    # Settings are otherwise read by the first task: every task would fail alike, for ever.
    from alfred import runtime
    from alfred.config import ConfigError

    try:
        runtime.settings()
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr, flush=True)
        os._exit(2)  # not SystemExit: Celery would print it as a traceback
