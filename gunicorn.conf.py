"""gunicorn's settings for the web process: `gunicorn -c gunicorn.conf.py wsgi:app --bind …`.

The bind address stays on the command line (Procfile: $PORT; fly.toml: 8080). What is here
bounds what one slow or hostile client can hold (docs/inbound.md, Slow clients).
"""

worker_class = "gthread"
# Two cores: one process per core, and threads for the time a request waits on Redis.
workers = 2
threads = 4
# The app is imported once in the master and shared by the forked workers (wsgi.py).
preload_app = True
# A worker whose main loop is stuck this long is killed and replaced by the master.
timeout = 30
# An idle kept-alive connection is parked on the poller, not a thread, for this long.
keepalive = 5
# Request line and headers stay small: Meta's are a few hundred bytes. The body is read by
# the app within WEBHOOK_BODY_TIMEOUT_S (alfred/web/body.py), never without a deadline.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

# Metrics and shutdown (alfred/web/gunicorn_hooks.py): each worker heartbeats and may serve the
# metrics port (never the master, which forks); in-flight requests get 20 s on SIGTERM, under
# fly.toml's kill_timeout.
from alfred.web.gunicorn_hooks import (  # noqa: E402
    child_exit,  # noqa: F401
    graceful_timeout,  # noqa: F401
    post_worker_init,  # noqa: F401
)
