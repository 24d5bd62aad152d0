"""The `worker` process: Celery's own `worker` command, without the `celery` command around it.

    python -m alfred.worker_app -P threads -c 16 -Q ingest,outbound,alfred --outbox ...

The options are `celery -A alfred.celery_app worker`'s, the same click command with the app's
user options (`--outbox`, alfred/outbox/worker_step.py) added as the `celery` command adds
them. What is left out is the umbrella command: `celery` imports every subcommand and its
plugins whatever the subcommand (Flower with Tornado, the REPL's prompt_toolkit and Pygments),
13 MB a worker never uses (docs/benchmarks.md). `celery -A alfred.celery_app worker` still
works, and runs the same worker.
"""

from __future__ import annotations

import sys

from celery.bin.base import CLIContext
from celery.bin.worker import worker as worker_command

from alfred.celery_app import celery

PROG = "python -m alfred.worker_app"


def main(argv: list[str] | None = None) -> None:
    """Run the worker in the foreground with `celery worker`'s options until it is stopped."""
    # As the `celery` command's own callback does, once it knows the app.
    worker_command.params.extend(celery.user_options.get("worker", []))
    context = CLIContext(app=celery, no_color=False, workdir=None, quiet=False)
    worker_command.main(
        args=sys.argv[1:] if argv is None else argv,
        prog_name=PROG,
        obj=context,
        auto_envvar_prefix="CELERY",
    )


if __name__ == "__main__":
    main()
