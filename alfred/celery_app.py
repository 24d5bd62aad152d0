"""The Celery application: `celery -A alfred.celery_app worker|beat`."""

from __future__ import annotations

import sys

from celery import Celery

from alfred.config import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    # celeryconfig.py sits at the repository root (CONTRACT.md), beside wsgi.py.
    sys.path.insert(0, str(REPO_ROOT))

celery = Celery(
    "alfred",
    include=["alfred.ingest.tasks", "alfred.outbound.tasks", "alfred.maintenance.tasks"],
)
celery.config_from_object("celeryconfig")
app = celery
