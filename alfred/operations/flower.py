"""The flower process: Flower, never open. `python -m alfred.operations.flower`.

Flower serves without authentication unless told otherwise, and its /metrics and
/healthcheck skip authentication even then. This launcher refuses to start without
FLOWER_BASIC_AUTH (or Flower's OAuth settings, FLOWER_AUTH with FLOWER_OAUTH2_KEY and
FLOWER_OAUTH2_SECRET), puts Flower's own /metrics behind the same authentication, and runs
`celery flower` in this process. Flower reads FLOWER_BASIC_AUTH from the environment itself,
so the credentials never appear on a command line (or in `ps`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

OAUTH = ("FLOWER_AUTH", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET")


def why_not(env: Mapping[str, str]) -> str | None:
    """Say why Flower must not start with this environment; None when it may."""
    if env.get("FLOWER_UNAUTHENTICATED_API", "").lower() in ("1", "true", "yes", "on"):
        return "FLOWER_UNAUTHENTICATED_API opens Flower's API to anyone: unset it"
    if env.get("FLOWER_BASIC_AUTH"):
        return None
    if all(env.get(name) for name in OAUTH):
        return None
    return (
        "FLOWER_BASIC_AUTH is not set (user:password[,user:password]), nor Flower's OAuth "
        f"settings ({', '.join(OAUTH)}): Flower never serves without authentication"
    )


def protect_metrics() -> None:
    """Make Flower's /metrics ask for the same credentials as its pages."""
    import tornado.web
    from flower import urls
    from flower.views import monitor

    class AuthenticatedMetrics(monitor.Metrics):
        @tornado.web.authenticated
        async def get(self):
            await super().get()

    for index, handler in enumerate(urls.handlers):
        spec = tuple(handler) if isinstance(handler, tuple | list) else None
        if spec and spec[1] is monitor.Metrics:
            urls.handlers[index] = (spec[0], AuthenticatedMetrics, *spec[2:])


def show_the_broker() -> None:
    """Let Flower's broker page and queue lengths find Redis behind our kombu transport.

    Flower picks its broker client by the URL's scheme, and the Celery connection names our
    transport (`alfred.broker:Transport://…`, celeryconfig.broker_transport) instead of
    `redis://`: Flower then answered its broker page and /api/queues/length with 404 "'redis'
    broker is not supported". The URL it needs is the broker's own, the one Celery was given.
    """
    from flower.app import Flower

    def broker_uri_with_password(self) -> str:
        return str(self.capp.conf.broker_url)

    Flower.broker_uri_with_password = property(broker_uri_with_password)


def main(argv: list[str] | None = None) -> int:
    """Refuse, saying why, or run Flower on FLOWER_PORT (and FLOWER_ADDRESS) until stopped."""
    from alfred.config import ConfigError, OpsSettings

    problem = why_not(os.environ)
    if problem is None:
        try:
            ops = OpsSettings.from_env(os.environ)
        except ConfigError as exc:
            problem = str(exc)
    if problem is not None:
        print(f"flower: refusing to start: {problem}", file=sys.stderr)
        return 2
    # Flower's values are its own (served on its /metrics, behind its auth), not the machine's
    # multiprocess folder that the metrics port sums.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    protect_metrics()
    show_the_broker()
    from celery.bin.celery import main as celery_main

    address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
    sys.argv = [
        "celery",
        "-A",
        "alfred.celery_app",
        "flower",
        f"--port={ops.flower_port}",
        f"--address={address}",
        *(argv if argv is not None else sys.argv[1:]),
    ]
    return celery_main()


if __name__ == "__main__":
    sys.exit(main())
