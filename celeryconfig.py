"""Celery settings for at-least-once delivery over Redis; each value says why it is what it is.

Every setting here has an effect with the pool the Procfile ships, `-P threads`. Settings that
only a process pool honours are left out on purpose, and what they would have done is done
another way (docs/reliability.md, "Celery settings and why"):
- time limits (`task_time_limit`, `task_soft_time_limit`): a thread cannot be killed; each
  blocking call has its own timeout instead: Graph requests 3.05 s to connect and 10 s to
  read (alfred/whatsapp/graph.py), Redis sockets 5 s (alfred/redis_client.py, and below),
  PostgreSQL statements 30 s (alfred/db.py), SQLite's busy wait 30 s; and a task still
  running after 60 s, stuck where none of those reach, is logged (`task.overrun`) and counted
  (alfred_task_overruns_total) by the watchdog (alfred/operations/watchdog.py), not killed;
- `worker_max_memory_per_child`: there is no child to recycle;
- `task_reject_on_worker_lost`: no child dies alone; a whole worker's death is covered by the
  journals' sweeper.
See FACTS.md for the behaviour of Celery's Redis transport that these settings work around.
"""

import os
import ssl

from celery.schedules import crontab

from alfred.config import VAR_DIR
from alfred.redis_client import kombu_sentinel
from alfred.redis_url import is_sentinel

# REDIS_URL as given: beat's once-per-period keys (alfred/beat_once.py) are set through it. The
# name says SECRET so that Celery masks it wherever it shows the configuration: `inspect conf`,
# which Flower's worker page calls, masks only names like that and the broker's own URL, and a
# password in REDIS_URL would be shown (tests/security/test_no_open_doors.py).
alfred_redis_url_secret = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
broker_url = alfred_redis_url_secret
# kombu's Redis transport, reusing its redis-py client instead of building one per publish
# (alfred/broker.py): the URL above still says where Redis is.
broker_transport = "alfred.broker:Transport"
_sentinel_options: dict = {}
if is_sentinel(alfred_redis_url_secret):
    # sentinel://h1:p1;sentinel://h2:p2/db?master_name=NAME (alfred/redis_client.py): kombu's
    # Sentinel transport, fed the sentinels, the database and master_name as it reads them.
    broker_url, _sentinel_options = kombu_sentinel(alfred_redis_url_secret)
    broker_transport = "alfred.broker:SentinelTransport"
if broker_url.startswith("rediss://"):
    # kombu turns TLS on from the URL's scheme, which broker_transport takes the place of: say
    # it here, with the server's certificate verified (kombu's default for rediss:// is not).
    broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}

# Acknowledge after the task ran, not when it was received: until then the worker holds the
# message, and puts it back if the worker shuts down warm before running it.
task_acks_late = True
# Hold only the tasks being run: a dying worker strands at most its running tasks, and a
# slow task never hides work from an idle sibling. Our tasks take milliseconds.
worker_prefetch_multiplier = 1

# No acknowledgement emulation: a task popped off the list is the worker's, and nothing comes
# back on a timer. kombu's emulation costs the worker's main process two MULTI round trips
# per task (record the message as unacknowledged, then forget it), a fifth of a send's CPU
# (docs/benchmarks.md), and what it buys the journals already give, better: its timer
# re-delivers a lost task only after visibility_timeout, and a SIGKILL between the pop and
# the record loses the task anyway (FACTS, Celery section). Every task is journaled or
# periodic (docs/reliability.md), so work lost with a whole worker is re-driven by the
# sweeper within a minute. A killed prefork child's task, a rejected task and the tasks held
# at a warm shutdown are still put back at once, from the worker's memory.
_transport = {
    "ack_emulation": False,
    # Fail fast when Redis is down so the webhook answers 503 and Meta retries.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "retry_on_timeout": True,
    "health_check_interval": 30,
    **_sentinel_options,
}
broker_transport_options = _transport

# Publishing waits at most ~0.5 s for a broker that is down, then the caller gets an error.
task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.3,
}
broker_connection_retry_on_startup = True

# Results are not used: outcomes live in the database and the streams.
task_ignore_result = True
# Celery's defaults are relied on, not restated: JSON only (no pickle is accepted), UTC,
# publish retries on, no task events until Flower asks for them, no task-sent event (which
# would add a PUBLISH to every webhook's task).

# SIGTERM (Fly's kill_signal) is a warm shutdown: running tasks finish, reserved ones go back.
# A cold shutdown (a second signal, SIGQUIT) first waits this long for them too: under fly.toml's
# kill_timeout (30 s), so the worker exits before Fly SIGKILLs it; what is left is journaled.
worker_soft_shutdown_timeout = 20.0

# Ingest and outbound work in separate queues, so a burst of one never starves the other.
task_default_queue = "alfred"
task_routes = {
    "alfred.ingest_delivery": {"queue": "ingest"},
    "alfred.send_message": {"queue": "outbound"},
    "alfred.mark_as_read": {"queue": "outbound"},
    "alfred.fetch_media": {"queue": "alfred"},
}

# alfred/logs.py configures logging (JSON lines); Celery must not replace its handlers.
worker_hijack_root_logger = False

# Beat's file of last run times lives under var/, never in the repository root.
beat_schedule_filename = str(VAR_DIR / "celerybeat-schedule")
# Two beats (two machines) fire each entry once per period, not twice (alfred/beat_once.py).
beat_scheduler = "alfred.beat_once:OnceScheduler"
beat_schedule = {
    # Re-drive journal entries whose task was lost (see alfred/journals/).
    "sweep-journals": {"task": "alfred.sweep_journals", "schedule": 10.0},
    # Every tenant's token, Mondays at 03:00 UTC (CONTRACT.md, docs/tokens.md).
    "rotate-tokens": {
        "task": "alfred.rotate_tokens",
        "schedule": crontab(minute=0, hour=3, day_of_week=1),
    },
    # The same week's run, if beat was down at 03:00 (the week's slot makes it run once).
    "rotate-tokens-catch-up": {
        "task": "alfred.rotate_tokens",
        "schedule": 3600.0,
        "kwargs": {"reason": "catch_up"},
    },
    # Archive, anonymise and expire personal data, daily at 02:30 UTC (docs/privacy.md). A day
    # missed is caught up by the next run: each run takes everything past the hot window.
    "pii-lifecycle": {"task": "alfred.pii_lifecycle", "schedule": crontab(minute=30, hour=2)},
    # The in-app alert notifier (alfred/operations/notifier.py); beat evaluates too, in case
    # the worker is what stopped. A Redis lock keeps it to one evaluation per period.
    "evaluate-alerts": {
        "task": "alfred.evaluate_alerts",
        "schedule": float(os.environ.get("ALERT_EVALUATE_EVERY_S", "30")),
    },
}
