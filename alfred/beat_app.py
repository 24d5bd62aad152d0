"""The `beat` process: a Celery app that includes no task module, and its launcher.

    python -m alfred.beat_app [--schedule FILE] [--loglevel LEVEL]

Beat only publishes the schedule's tasks by name (`alfred.sweep_journals`, celeryconfig's
`beat_schedule`); the worker, on `alfred.celery_app`, imports and runs them. So beat needs
neither SQLAlchemy, requests, marshmallow nor the models. Started here rather than through
the `celery` command, it also skips the command line's plugins (Flower and its Tornado, the
REPL's prompt_toolkit and Pygments), which `celery` imports whatever the subcommand: 31 MB of
PSS instead of 80 MB (docs/benchmarks.md, Memory). `celery -A alfred.beat_app beat` works too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from celery import Celery
from celery.signals import setup_logging

from alfred.config import REPO_ROOT, VAR_DIR
from alfred.logs import configure_celery_logging

# celeryconfig.py sits at the repository root, beside wsgi.py (CONTRACT.md).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

celery = Celery("alfred")
celery.config_from_object("celeryconfig")
app = celery
# Beat's logs as the same JSON lines as every other process.
setup_logging.connect(configure_celery_logging)


def main(argv: list[str] | None = None) -> None:
    """Run beat in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m alfred.beat_app", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "-s",
        "--schedule",
        default=str(VAR_DIR / "celerybeat-schedule"),
        help="file of last run times (default: under var/)",
    )
    parser.add_argument("-l", "--loglevel", default="INFO")
    args = parser.parse_args(argv)
    Path(args.schedule).parent.mkdir(parents=True, exist_ok=True)
    from alfred.operations import exporter

    # Heartbeat, the metrics port if free, and the alert notifier's own evaluation: beat pages
    # even when the worker (which runs the scheduled evaluation) is what stopped.
    exporter.start("beat", alerts=True)
    # The same object `celery beat` builds from its options, without the command line.
    celery.Beat(schedule=args.schedule, loglevel=args.loglevel).run()


if __name__ == "__main__":
    main()
