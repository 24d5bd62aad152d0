"""The operator's command line: `python -m alfred COMMAND …` (docs/operations.md).

Exit codes: 0 done, 1 the operation failed (Meta refused, a service is down, some items
failed), 2 the request itself is wrong (bad arguments, invalid message, bad configuration).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import null, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from alfred.config import ConfigError

HOT_DAYS, COLD_DAYS = 30, 90  # messages stay whole 30 days, then 90 in cold storage, then go


class Failed(Exception):
    """The command could not do its job; the message says why (exit 1)."""


class Refused(Exception):
    """The request itself is wrong; the message says why (exit 2)."""


# --- small helpers ------------------------------------------------------------------------


def _settings():
    """Return the settings, read from the environment once."""
    from alfred import runtime

    return runtime.settings()


def _safe_url(url: str) -> str:
    """Show a database or Redis URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _when(moment: datetime | None) -> str:
    """Format a stored time as ISO 8601 in UTC, seconds only."""
    if moment is None:
        return "-"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _table(headers: Sequence[str], rows: list[Sequence[object]]) -> None:
    """Print rows as aligned columns."""
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _tenant(tenant_id: str):
    """Return a configured tenant, or refuse with the ones that exist."""
    settings = _settings()
    tenant = settings.tenants.get(tenant_id)
    if tenant is None:
        known = ", ".join(sorted(settings.tenants)) or "none: set ALFRED_TENANTS"
        raise Refused(f"unknown tenant {tenant_id!r} (configured: {known})")
    return tenant


def _enqueue(message: dict) -> dict:
    """Journal and publish a send_message task; return the message as stamped."""
    import alfred.celery_app  # noqa: F401 - binds the shared task to our broker settings
    from alfred.outbound.service import stamp
    from alfred.outbound.tasks import send_message

    message = stamp(message)
    try:
        send_message.apply_async(args=[message])
    except Exception as exc:
        raise Failed(
            f"could not enqueue: {type(exc).__name__}: {exc} "
            f"(is Redis at {_safe_url(_settings().redis_url)} up?)"
        ) from None
    return message


# --- db, send, smoke ----------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Bring the database at DATABASE_URL to the newest schema."""
    from alembic.script import ScriptDirectory

    from alfred.migrate import alembic_config, upgrade

    url = _settings().database_url
    upgrade(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    print(f"database {_safe_url(url)} is at revision {head} (head)")
    return 0


def _text_message(args: argparse.Namespace) -> dict:
    """Build a text message from the command's arguments."""
    message: dict = {"tenant_id": args.tenant, "type": "text", "text": {"body": args.text}}
    if args.to:
        message["to"] = args.to
    if args.recipient:
        message["recipient"] = args.recipient
    if args.key:
        message["idempotency_key"] = args.key
    return message


def _check(message: dict) -> None:
    """Refuse an invalid message with its reason before anything is recorded or sent."""
    from alfred.whatsapp.messages import InvalidMessage, validate_message

    _tenant(message["tenant_id"])
    try:
        validate_message(message)
    except InvalidMessage as exc:
        raise Refused(f"invalid message: {exc.reason}: {exc.errors}") from None


def _send_now(message: dict) -> int:
    """Send one message in this process, once, and print what Meta made of it."""
    from alfred import runtime
    from alfred.outbound.audit import write_pending
    from alfred.outbound.service import stamp
    from alfred.outbound.tasks import sender

    message = stamp(message)
    outcome = sender().send(message)
    # No worker may be running to write the audit batch: write it from here.
    write_pending(settings=_settings(), client=runtime.redis_client())
    print(f"idempotency key: {message['idempotency_key']}")
    print(f"status: {outcome.status}")
    if outcome.wamids:
        print(f"wamid: {', '.join(outcome.wamids)}")
    if outcome.status in ("sent", "duplicate"):
        return 0
    if outcome.reason:
        print(f"reason: {outcome.reason}")
    row = _message_row(message["tenant_id"], message["idempotency_key"])
    if row is not None and (row.error_code or row.error_detail):
        print(f"Meta's error: {row.error_code} {row.error_reason}: {row.error_detail}")
    if outcome.status == "retry":
        print(f"not sent: Meta may take it if retried in {outcome.retry_in:.1f} s")
    return 1


def _message_row(tenant_id: str, key: str):
    """Return the outbound row of a message, or None."""
    from alfred.db import session_scope
    from alfred.models import Message

    with session_scope(_settings().database_url) as session:
        return session.scalar(
            select(Message).where(Message.tenant_id == tenant_id, Message.idempotency_key == key)
        )


def _wait_for(message: dict, timeout: float) -> int:
    """Poll the message's row until a worker has decided its fate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _message_row(message["tenant_id"], message["idempotency_key"])
        if row is not None and row.status != "queued":
            print(f"status: {row.status}" + (f", wamid: {row.wamid}" if row.wamid else ""))
            if row.error_reason:
                print(f"reason: {row.error_reason}: {row.error_detail or ''}".rstrip(": "))
            return 0 if row.status in ("accepted", "sent", "delivered", "read") else 1
        time.sleep(0.2)
    raise Failed(f"still queued after {timeout:g} s: is a worker running (make run)?")


def cmd_send(args: argparse.Namespace) -> int:
    """Send a text message: enqueue it for the workers, or with --now send it right here."""
    message = _text_message(args)
    _check(message)
    if args.now:
        return _send_now(message)
    message = _enqueue(message)
    print(f"enqueued; idempotency key: {message['idempotency_key']}")
    return _wait_for(message, args.timeout) if args.wait else 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """Send Meta's hello_world template in this process: the sandbox check."""
    message = {
        "tenant_id": args.tenant,
        "to": args.to,
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }
    _check(message)
    return _send_now(message)


# --- long-running processes ---------------------------------------------------------------


def cmd_simulator(args: argparse.Namespace) -> int:
    """Serve the local Cloud API simulator until interrupted."""
    from alfred import logs
    from alfred.simulator import SimulatorConfig, run_simulator

    logs.configure()
    run_simulator(SimulatorConfig.from_env(), host=args.host, port=args.port)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """Run the «alfred-outbox» bridge until SIGTERM or Ctrl-C."""
    from alfred import logs
    from alfred.outbound.bridge import run_bridge

    logs.configure()
    run_bridge()
    return 0


# --- dead letters and quarantine ----------------------------------------------------------


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """List dead-lettered outbound messages, newest first."""
    from alfred.db import session_scope
    from alfred.outbound.records import dead_letters

    with session_scope(_settings().database_url) as session:
        rows = dead_letters(session, tenant_id=args.tenant, limit=args.limit)
        table = [
            (r.idempotency_key, r.tenant_id, r.wa_id or r.user_id, r.error_reason, r.error_code,
             r.attempts, _when(r.updated_at))
            for r in rows
        ]  # fmt: skip
    if not table:
        print("no dead-lettered messages")
        return 0
    _table(("key", "tenant", "to/recipient", "reason", "code", "attempts", "updated"), table)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Put dead letters back in the queue with fresh attempts."""
    from alfred import runtime
    from alfred.db import session_scope
    from alfred.models import Message
    from alfred.outbound.records import dead_letters, reopen

    if bool(args.key) == bool(args.all):
        raise Refused("give one KEY or --all")
    url = _settings().database_url
    with session_scope(url) as session:
        if args.all:
            rows = dead_letters(session, tenant_id=args.tenant, limit=args.limit)
        else:
            query = select(Message).where(
                Message.idempotency_key == args.key, Message.status == "dead_lettered"
            )
            if args.tenant:
                query = query.where(Message.tenant_id == args.tenant)
            rows = list(session.scalars(query))
            if not rows:
                raise Failed(f"no dead-lettered message with key {args.key!r}")
            if len(rows) > 1:
                raise Refused(f"key {args.key!r} is dead-lettered in several tenants: add --tenant")
        picked = [(r.id, r.tenant_id, r.idempotency_key, r.attempts) for r in rows]
    failures = 0
    for row_id, tenant_id, key, attempts in picked:
        with session_scope(url) as session:
            message = reopen(session, session.get(Message, row_id), runtime.redis_client())
        message.pop("enqueued_at", None)  # measure the send lag from this replay
        try:
            _enqueue(message)
        except Failed as exc:
            failures += 1
            with session_scope(url) as session:
                # Not queued after all: leave it dead-lettered, as it was, to replay later.
                session.execute(
                    update(Message)
                    .where(Message.id == row_id)
                    .values(status="dead_lettered", attempts=attempts)
                )
            print(f"{tenant_id}/{key}: {exc}")
            continue
        print(f"{tenant_id}/{key}: re-enqueued")
    if not picked:
        print("no dead-lettered messages")
    return 1 if failures else 0


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    """List quarantined inbound events, newest first."""
    from alfred.db import session_scope
    from alfred.ingest.quarantine import list_held

    with session_scope(_settings().database_url) as session:
        rows = list_held(
            session,
            reason=args.reason,
            tenant_id=args.tenant,
            include_replayed=args.all,
            limit=args.limit,
        )
        table = [
            (r.id, _when(r.received_at), r.reason, r.tenant_id or None, r.event,
             (r.detail or "")[:70], r.replay_result if r.replayed_at else None)
            for r in rows
        ]  # fmt: skip
    if not table:
        print("no quarantined events" + ("" if args.all else " waiting for replay"))
        return 0
    _table(("id", "received", "reason", "tenant", "event", "detail", "replayed"), table)
    return 0


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    """Send quarantined events on to «alfred-ingest»."""
    from alfred import runtime
    from alfred.db import session_scope
    from alfred.ingest.quarantine import list_held
    from alfred.ingest.replay import replay

    if (args.id is None) == (not args.all):
        raise Refused("give one ID or --all")
    settings = _settings()
    if args.all:
        with session_scope(settings.database_url) as session:
            ids = [r.id for r in list_held(session, reason=args.reason, limit=args.limit)]
    else:
        ids = [args.id]
    failures = 0
    for event_id in reversed(ids):  # oldest first, as Meta sent them
        result = replay(event_id, settings=settings, client=runtime.redis_client())
        if result.startswith(("still", "no quarantined")):
            failures += 1
        print(f"{event_id}: {result}")
    if not ids:
        print("no quarantined events waiting for replay")
    return 1 if failures else 0


# --- tokens and privacy -------------------------------------------------------------------


def cmd_rotate_tokens(args: argparse.Namespace) -> int:
    """Exchange each tenant's token for a new long-lived one and store it encrypted."""
    from alfred.db import session_scope
    from alfred.tokens.store import current_token, save_token
    from alfred.whatsapp.graph import GraphClient

    settings = _settings()
    app_id = os.environ.get("META_APP_ID")
    if not app_id:
        raise Refused("set META_APP_ID (the Meta app's id) to exchange tokens")
    if not settings.app_secrets:
        raise Refused("set META_APP_SECRET to exchange tokens")
    tenants = [_tenant(args.tenant)] if args.tenant else list(settings.tenants.values())
    if not tenants:
        raise Refused("no tenants configured: set ALFRED_TENANTS")
    graph = GraphClient(settings.graph_api_url, settings.graph_api_version)
    failures = 0
    for tenant in tenants:
        # One tenant's failure must not keep the others on a token about to expire.
        try:
            token, lifetime = graph.exchange_token(
                app_id, settings.app_secrets[0], current_token(tenant, settings)
            )
            expires = datetime.now(UTC) + timedelta(seconds=lifetime) if lifetime else None
            with session_scope(settings.database_url) as session:
                save_token(session, settings, tenant_id=tenant.tenant_id, token=token,
                           expires_at=expires)  # fmt: skip
        except Exception as exc:
            failures += 1
            print(f"{tenant.tenant_id}: failed: {type(exc).__name__}: {exc}")
            continue
        print(f"{tenant.tenant_id}: rotated, expires {_when(expires) if expires else 'never'}")
    return 1 if failures else 0


def anonymise_messages(
    database_url: str, *, older_than: timedelta, dry_run: bool = False
) -> dict[str, int]:
    """Blank the personal data of messages older than `older_than`; return counts per tenant."""
    from alfred.db import session_scope
    from alfred.models import Message

    now = datetime.now(UTC)
    due = (Message.created_at < now - older_than, Message.anonymised_at.is_(None))
    with session_scope(database_url) as session:
        tenants = sorted(session.scalars(select(Message.tenant_id).where(*due).distinct()))
    counts: dict[str, int] = {}
    for tenant_id in tenants:
        # A transaction per tenant: one tenant's failure leaves the others done.
        with session_scope(database_url) as session:
            if dry_run:
                counts[tenant_id] = len(
                    session.scalars(select(Message.id).where(Message.tenant_id == tenant_id, *due))
                    .all()
                )  # fmt: skip
                continue
            result = session.execute(
                update(Message)
                .where(Message.tenant_id == tenant_id, *due)
                # null(): a JSON column would otherwise store the JSON text 'null'.
                .values(body=None, payload=null(), wa_id=None, user_id=None, username=None,
                        anonymised_at=now, updated_at=now)
            )  # fmt: skip
            counts[tenant_id] = result.rowcount
    return counts


def cmd_anonymise(args: argparse.Namespace) -> int:
    """Anonymise messages past the hot and cold windows."""
    if args.older_than_days < 1:
        raise Refused("--older-than-days must be at least 1")
    counts = anonymise_messages(
        _settings().database_url,
        older_than=timedelta(days=args.older_than_days),
        dry_run=args.dry_run,
    )
    verb = "would anonymise" if args.dry_run else "anonymised"
    for tenant_id, count in counts.items():
        print(f"{tenant_id}: {verb} {count} messages")
    print(f"total: {verb} {sum(counts.values())} messages older than {args.older_than_days} days")
    return 0


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

    anon = _command(sub, "anonymise", cmd_anonymise, "blank personal data of old messages")
    anon.add_argument(
        "--older-than-days",
        type=int,
        default=HOT_DAYS + COLD_DAYS,
        help=f"age in days (default {HOT_DAYS + COLD_DAYS}: {HOT_DAYS} hot + {COLD_DAYS} cold)",
    )
    anon.add_argument("--dry-run", action="store_true", help="count, change nothing")
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
        where = _safe_url(_settings().redis_url)
        print(f"error: Redis at {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        where = _safe_url(_settings().database_url)
        print(f"error: database {where}: {exc.orig or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
