"""The operator's command line: `python -m alfred COMMAND …` (docs/operations.md).

This module parses; alfred/cli/commands.py calls the services and prints. Exit codes: 0 done,
1 the operation failed (Meta refused, a service is down, some items failed), 2 the request
itself is wrong (bad arguments, invalid message, bad configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import redis
from sqlalchemy.exc import OperationalError

from alfred.cli.commands import (
    Failed,
    Refused,
    cmd_db_upgrade,
    cmd_dlq_list,
    cmd_dlq_replay,
    cmd_outbox,
    cmd_quarantine_list,
    cmd_quarantine_replay,
    cmd_rotate_key,
    cmd_rotate_tokens,
    cmd_send,
    cmd_simulator,
    cmd_smoke,
    current_settings,
    safe_url,
)
from alfred.cli.lifecycle import add_lifecycle_commands
from alfred.cli.operations import add_commands as add_operations_commands
from alfred.config import ConfigError

# --- the parser ---------------------------------------------------------------------------


def _command(sub, name: str, func: Callable[[argparse.Namespace], int], help_: str):
    """Add a subcommand whose handler is `func`."""
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Describe every command and its options."""
    parser = argparse.ArgumentParser(
        prog="python -m alfred",
        description="Operate Alfred's WhatsApp Cloud API bridge. Settings come from the "
        "environment (REDIS_URL, DATABASE_URL, ALFRED_TENANTS, …; docs/operations.md).",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    db = sub.add_parser("db", help="database schema: `db upgrade`")
    db_sub = db.add_subparsers(metavar="ACTION", required=True)
    _command(db_sub, "upgrade", cmd_db_upgrade, "apply Alembic migrations up to head")

    send = _command(sub, "send", cmd_send, "send a text message (enqueued for the workers)")
    send.add_argument("--tenant", default="home", help="tenant id (default: home)")
    send.add_argument("--to", help="the user's phone number, e.g. +14155551234")
    send.add_argument("--recipient", help="the user's BSUID, e.g. US.13491208655302741918")
    send.add_argument("--text", required=True, help="the message text")
    send.add_argument("--key", help="idempotency key (default: a new one)")
    how = send.add_mutually_exclusive_group()
    how.add_argument("--now", action="store_true", help="send in this process, print the outcome")
    how.add_argument("--wait", action="store_true", help="enqueue, then wait for the outcome")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits")

    smoke = _command(sub, "smoke", cmd_smoke, "send the hello_world template now (sandbox check)")
    smoke.add_argument("--tenant", default="home", help="tenant id (default: home)")
    smoke.add_argument("--to", required=True, help="a phone number allowed in Meta's sandbox")

    sim = _command(sub, "simulator", cmd_simulator, "serve the local Cloud API simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)

    _command(sub, "outbox", cmd_outbox, "run the «alfred-outbox» bridge (long-running)")

    dlq = sub.add_parser("dlq", help="dead-lettered outbound messages: list, replay")
    dlq_sub = dlq.add_subparsers(metavar="ACTION", required=True)
    dlq_list = _command(dlq_sub, "list", cmd_dlq_list, "list dead-lettered messages")
    dlq_replay = _command(dlq_sub, "replay", cmd_dlq_replay, "re-enqueue dead letters")
    dlq_replay.add_argument("key", nargs="?", help="the message's idempotency key")
    dlq_replay.add_argument("--all", action="store_true", help="every dead letter (see --limit)")
    for p in (dlq_list, dlq_replay):
        p.add_argument("--tenant", help="only this tenant")
        p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    quarantine = sub.add_parser("quarantine", help="held-back inbound events: list, replay")
    q_sub = quarantine.add_subparsers(metavar="ACTION", required=True)
    q_list = _command(q_sub, "list", cmd_quarantine_list, "list quarantined events")
    q_list.add_argument("--tenant", help="only this tenant")
    q_list.add_argument("--all", action="store_true", help="include events already replayed")
    q_replay = _command(q_sub, "replay", cmd_quarantine_replay, "send events on to alfred-ingest")
    q_replay.add_argument("id", nargs="?", type=int, help="the quarantined event's id")
    q_replay.add_argument("--all", action="store_true", help="every event waiting (see --limit)")
    for p in (q_list, q_replay):
        p.add_argument("--reason", help="only this reason, e.g. stale_timestamp")
        p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    rotate = _command(sub, "rotate-tokens", cmd_rotate_tokens, "exchange tenants' tokens for new")
    rotate.add_argument("--tenant", help="only this tenant (default: all)")
    _command(sub, "rotate-key", cmd_rotate_key, "re-encrypt stored tokens with the newest key")

    add_lifecycle_commands(sub, _command)
    add_operations_commands(sub)  # doctor, templates
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; print a clear reason and exit non-zero when it fails."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        where = safe_url(current_settings().redis_url)
        print(f"error: Redis at {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        where = safe_url(current_settings().database_url)
        reason = str(exc.orig or exc).splitlines()[0]
        print(
            f"error: database {where}: {reason} (start it, or point DATABASE_URL at one that"
            " answers)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
