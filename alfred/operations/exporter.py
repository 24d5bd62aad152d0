"""The metrics port: every process's values on METRICS_PORT, and each process's heartbeat.

Each long-running process (web's gunicorn workers, the worker, beat, the outbox bridge) calls
`start(process)`. All of a machine's processes write to the same PROMETHEUS_MULTIPROC_DIR, and
the first of them to bind METRICS_PORT serves the sum of every process's values; the others
keep trying, so if that process stops another takes the port over within CLAIM_EVERY_S. So
one mechanism serves both Fly layouts: one Machine running the whole stack, or one process
per Machine. The public web port answers /metrics with 404 (alfred/web/health.py).
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from alfred import metrics, runtime
from alfred.operations.backlog import BacklogCollector

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 5.0
CLAIM_EVERY_S = 5.0

# The process types this OS process heartbeats as (a worker running the outbox bridge in a
# thread is both), and its one exporter thread.
_names: set[str] = set()
_thread: list[threading.Thread] = []


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


HEARTBEATS_KEY = "alfred:heartbeats"
LIVE_PREFIX = "/live/"


def heartbeats() -> dict[str, float]:
    """Return each process type's latest heartbeat on this machine (Unix time)."""
    beats: dict[str, float] = {}
    for family in metrics.registry().collect():
        for sample in family.samples:
            if sample.name == "alfred_process_heartbeat_timestamp_seconds":
                process = sample.labels["process"]
                beats[process] = max(beats.get(process, 0.0), sample.value)
    return beats


def _text(start_response, status: str, body: str):
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


def metrics_app(environ, start_response):
    """Serve GET /metrics and GET /live/<process> (Fly's checks); every other path is 404."""
    path = environ.get("PATH_INFO", "")
    if path == "/metrics":
        body, content_type = metrics.render(BacklogCollector(runtime.redis_client))
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    if path.startswith(LIVE_PREFIX):
        process = path[len(LIVE_PREFIX) :]
        beat = heartbeats().get(process)
        stale_s = runtime.settings().ops.heartbeat_stale_s
        if beat is None:
            return _text(start_response, "503 Service Unavailable", f"{process}: never reported\n")
        age = time.time() - beat
        if age > stale_s:
            return _text(
                start_response, "503 Service Unavailable", f"{process}: silent for {age:.0f} s\n"
            )
        return _text(start_response, "200 OK", f"{process}: alive ({age:.0f} s ago)\n")
    return _text(start_response, "404 Not Found", "not found: the metrics are at /metrics\n")


def _server_class(addr: str) -> type[ThreadingWSGIServer]:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


def try_serve(addr: str, port: int):
    """Bind the metrics port and serve it in a thread; None if another process holds it."""
    try:
        server = make_server(addr, port, metrics_app, _server_class(addr), handler_class=_Quiet)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    return server


def _beat_in_redis(process: str, now: float) -> None:
    # Also in Redis, for `doctor` and for machines that do not share this folder.
    try:
        runtime.redis_client().hset(HEARTBEATS_KEY, process, f"{now:.3f}")
    except Exception as exc:
        log.debug("metrics.heartbeat_unsaved", extra={"error": str(exc)})


def beat(process: str) -> None:
    """Say `process` is alive now: for a loop that beats itself (the outbox bridge)."""
    now = time.time()
    metrics.PROCESS_HEARTBEAT.labels(process).set(now)
    _beat_in_redis(process, now)


def _evaluate_alerts() -> None:
    from alfred.operations.notifier import evaluate_once

    ops = runtime.settings().ops
    try:
        evaluate_once(runtime.redis_client(), ops, ops.alert_every_s)
    except Exception:
        log.exception("alert.evaluation_failed")


def _run(addr: str, port: int, alerts: bool) -> None:
    server = None
    next_alerts = 0.0
    while True:
        now = time.time()
        for process in list(_names):
            metrics.PROCESS_HEARTBEAT.labels(process).set(now)
            _beat_in_redis(process, now)
        if alerts and now >= next_alerts:
            _evaluate_alerts()
            next_alerts = now + runtime.settings().ops.alert_every_s
        if server is None:
            try:
                server = try_serve(addr, port)
            except OSError as exc:
                log.error("metrics.port_failed", extra={"port": port, "error": str(exc)})
                return
            if server is not None:
                log.info("metrics.serving", extra={"processes": sorted(_names), "port": port})
        time.sleep(min(HEARTBEAT_EVERY_S, CLAIM_EVERY_S))


def start(process: str, *, alerts: bool = False, heartbeat: bool = True) -> None:
    """Heartbeat as `process`, serve METRICS_PORT if free (else keep trying), clean up at exit.

    Without `heartbeat`, the caller beats for itself (`beat`), so its liveness is its loop's.
    With `alerts`, also evaluate the alert conditions on their schedule: beat does, so that a
    worker that stopped (which runs the scheduled evaluation task) is still paged about.
    """
    ops = runtime.settings().ops
    if ops.metrics_port == 0:
        return  # METRICS_PORT=0: no exporter, no heartbeat (the test suite's own processes)
    if heartbeat:
        _names.add(process)
    if _thread:
        return
    thread = threading.Thread(
        target=_run,
        args=(ops.metrics_addr, ops.metrics_port, alerts and ops.alert_notifier),
        daemon=True,
        name="metrics-exporter",
    )
    _thread.append(thread)
    thread.start()
    atexit.register(metrics.mark_process_dead, os.getpid())
