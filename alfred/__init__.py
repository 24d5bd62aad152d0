"""Alfred's WhatsApp bridge: Meta's Cloud API on one side, Alfred's orchestrator on the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

# Meta's payloads reach 3 MB (FACTS F2); the limit sits above that, so only abuse gets 413.
MAX_WEBHOOK_BYTES = 4 * 1024 * 1024


def create_app(config: dict | None = None) -> Flask:
    """Build the web process: webhook, health and metrics endpoints."""
    # Flask is imported here, not at the top: every process imports this package, and beat
    # and the worker have no use for Flask's ~15 MB (docs/benchmarks.md, Memory).
    from flask import Flask

    from alfred import runtime
    from alfred.logs import configure_logging
    from alfred.tokens.store import check_key
    from alfred.web import health, webhook

    configure_logging()
    check_key(runtime.settings())  # no silent per-machine key with a server database
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    if config:
        app.config.update(config)
    webhook.init_app(app)
    health.init_app(app)
    return app
