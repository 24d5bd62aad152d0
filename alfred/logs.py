"""Structured logs: one JSON object a line, secrets never included, phone numbers masked,
the same in every process.

configure_logging() is called by each process's entry point: the web app (create_app), the
worker and beat (Celery's setup_logging signal, so Celery installs no formatter of its own),
the outbox bridge and the simulator.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from alfred.config import log_level

# A record's own attributes; `message` and `asctime` too, which other formatters (pytest's,
# Celery's) set on the record when they format it first: `event` already says it.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# A run of 7-19 digits, optionally after a plus, standing alone: a phone number or a wa_id.
_NUMBER = re.compile(r"(?<![\w.:-])\+?\d[\d ]{5,17}\d(?![\w.:-])")


def mask_numbers(text: str) -> str:
    """Hide every phone-number-like run of digits but its last two."""
    return _NUMBER.sub(lambda m: "\u2022" * 4 + m.group(0)[-2:], text)


def _masked(value: object) -> object:
    return mask_numbers(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra` fields as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": mask_numbers(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = _masked(value)
        if record.exc_info:
            # Exceptions quote values (a database error its parameters): mask them too.
            data["exc"] = mask_numbers(self.formatException(record.exc_info))
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(level: str | int | None = None) -> None:
    """Send JSON logs to stderr, once per process (a second call changes nothing)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level or log_level())
    logging.Formatter.converter = time.gmtime


def configure_celery_logging(loglevel: str | int | None = None, **_kwargs) -> None:
    """Celery's setup_logging receiver: the worker's and beat's logs, as JSON."""
    configure_logging(loglevel)
