"""The operator's commands: each calls one service and prints what came of it."""

from __future__ import annotations

import argparse
import time

from alfred.cli.output import print_table, safe_url, when


class Failed(Exception):
    """The command could not do its job; the message says why (exit 1)."""


class Refused(Exception):
    """The request itself is wrong; the message says why (exit 2)."""


# --- small helpers ------------------------------------------------------------------------


def current_settings():
    """Return the settings, read from the environment once."""
    from alfred import runtime

    return runtime.settings()


def _tenant(tenant_id: str):
    """Return a configured tenant, or refuse with the ones that exist."""
    settings = current_settings()
    tenant = settings.tenants.get(tenant_id)
    if tenant is None:
        known = ", ".join(sorted(settings.tenants)) or "none: set ALFRED_TENANTS"
        raise Refused(f"unknown tenant {tenant_id!r} (configured: {known})")
    return tenant


def _enqueue(message: dict) -> dict:
    """Journal and publish a send_message task; return the message as stamped."""
    import alfred.celery_app  # noqa: F401 - binds the shared task to our broker settings
    from alfred.outbound.tasks import enqueue

    try:
        return enqueue(message)
    except Exception as exc:
        raise Failed(
            f"could not enqueue: {type(exc).__name__}: {exc} "
            f"(is Redis at {safe_url(current_settings().redis_url)} up?)"
        ) from None


# --- db, send, smoke ----------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Bring the database at DATABASE_URL to the newest schema."""
    from alfred.migrate import head, upgrade

    url = current_settings().database_url
    upgrade(url)
    print(f"database {safe_url(url)} is at revision {head(url)} (head)")
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
    from alfred.outbound.service import stamp
    from alfred.outbound.tasks import send_here

    message = stamp(message)
    outcome = send_here(message)
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
    from alfred.messages.store import outbound_row

    return outbound_row(current_settings().database_url, tenant_id, key)


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
    from alfred.logs import configure_logging
    from alfred.simulator import SimulatorConfig, run_simulator

    configure_logging()
    run_simulator(SimulatorConfig.from_env(), host=args.host, port=args.port)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """Run the «alfred-outbox» bridge until SIGTERM or Ctrl-C."""
    from alfred.outbox.bridge import run_bridge

    run_bridge()
    return 0


# --- dead letters and quarantine ----------------------------------------------------------


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """List dead-lettered outbound messages, newest first."""
    from alfred.outbound.dead_letters import list_dead_letters

    rows = list_dead_letters(
        current_settings().database_url, tenant_id=args.tenant, limit=args.limit
    )
    table = [
        (r.idempotency_key, r.tenant_id, r.wa_id or r.user_id, r.error_reason, r.error_code,
         r.attempts, when(r.updated_at))
        for r in rows
    ]  # fmt: skip
    if not table:
        print("no dead-lettered messages")
        return 0
    print_table(("key", "tenant", "to/recipient", "reason", "code", "attempts", "updated"), table)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Put dead letters back in the queue with fresh attempts."""
    from alfred import runtime
    from alfred.outbound import dead_letters

    if bool(args.key) == bool(args.all):
        raise Refused("give one KEY or --all")
    url = current_settings().database_url
    try:
        picked = dead_letters.pick(
            url, key=None if args.all else args.key, tenant_id=args.tenant, limit=args.limit
        )
    except dead_letters.NoSuchDeadLetter as exc:
        raise Failed(str(exc)) from None
    except dead_letters.AmbiguousKey as exc:
        raise Refused(str(exc)) from None
    failures = 0
    for done in dead_letters.replay(url, runtime.redis_client(), picked, enqueue=_enqueue):
        failures += done.error is not None
        print(f"{done.tenant_id}/{done.key}: {done.error or 're-enqueued'}")
    if not picked:
        print("no dead-lettered messages")
    return 1 if failures else 0


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    """List quarantined inbound events, newest first."""
    from alfred.ingest.quarantine import held

    rows = held(
        current_settings().database_url,
        reason=args.reason,
        tenant_id=args.tenant,
        include_replayed=args.all,
        limit=args.limit,
    )
    table = [
        (r.id, when(r.received_at), r.reason, r.tenant_id or None, r.event,
         (r.detail or "")[:70], r.replay_result if r.replayed_at else None)
        for r in rows
    ]  # fmt: skip
    if not table:
        print("no quarantined events" + ("" if args.all else " waiting for replay"))
        return 0
    print_table(("id", "received", "reason", "tenant", "event", "detail", "replayed"), table)
    return 0


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    """Send quarantined events on to «alfred-ingest»."""
    from alfred import runtime
    from alfred.ingest.quarantine import held
    from alfred.ingest.replay import replay

    if (args.id is None) == (not args.all):
        raise Refused("give one ID or --all")
    settings = current_settings()
    if args.all:
        ids = [r.id for r in held(settings.database_url, reason=args.reason, limit=args.limit)]
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
    """Rotate each tenant's token (the beat job's service) and print each result, never a token."""
    from alfred import runtime
    from alfred.tokens.rotation import RotationRefused, rotate_tokens

    settings = current_settings()
    tenants = [_tenant(args.tenant)] if args.tenant else None
    try:
        results = list(rotate_tokens(settings, runtime.redis_client(), tenants))
    except RotationRefused as exc:
        raise Refused(str(exc)) from None
    for done in results:
        if done.outcome == "rotated":
            expires = when(done.expires_at) if done.expires_at else "never"
            print(f"{done.tenant_id}: rotated, expires {expires}")
        else:
            detail = f" ({done.error})" if done.error else ""
            print(f"{done.tenant_id}: {done.outcome}: {done.reason}{detail}")
    return 1 if any(done.outcome == "failed" for done in results) else 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypt every stored token with the newest key of ALFRED_ENCRYPTION_KEY."""
    from alfred.tokens.store import reencrypt_all

    count = reencrypt_all(current_settings())
    print(f"re-encrypted {count} stored token(s) with the newest key; the older keys may go")
    return 0
