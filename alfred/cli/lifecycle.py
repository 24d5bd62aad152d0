"""The operator's lifecycle commands: `anonymise` (the daily job by hand) and `erase`."""

from __future__ import annotations

import argparse
from datetime import datetime


def moment(text: str) -> datetime:
    """Parse --now: a full ISO-8601 time with its offset (2027-01-01T20:18:57+00:00)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time such as 2027-01-01T20:18:57+00:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add +00:00 (or Z)")
    return value


def batch_size(text: str) -> int:
    """Parse --batch-size: a whole number of records, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a batch holds at least 1 record")
    return value


def _services():
    from alfred import runtime
    from alfred.blobstore import store_for

    settings = runtime.settings()
    return settings, store_for(settings), runtime.redis_client()


def cmd_anonymise(args: argparse.Namespace) -> int:
    """Run the PII lifecycle now (or at --now): archive, anonymise, expire."""
    from alfred.lifecycle import service

    settings, store, client = _services()
    report = service.run(
        settings,
        store=store,
        client=client,
        now=args.now,
        tenant=args.tenant,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
    )
    would = "would " if args.dry_run else ""
    total = 0
    for tenant_id, result in report.tenants.items():
        name = tenant_id or "(no tenant)"
        if result.error:
            print(f"{name}: failed: {result.error}")
            continue
        archived = sum(result.archived.values())
        total += archived
        if not tenant_id and not archived and not result.archives_expired:
            continue  # events of no tenant: said only when there are some
        detail = ", ".join(f"{k} {v}" for k, v in sorted(result.archived.items()) if v)
        print(
            f"{name}: {would}archive {archived} records"
            + (f" ({detail})" if detail else "")
            + ("" if args.dry_run else f", {sum(result.anonymised.values())} anonymised")
            + f", {would}expire {result.archives_expired} archives"
        )
    for stream, count in report.trimmed.items():
        print(f"{stream}: trimmed {count} entries older than the hot window")
    print(f"total: {would}archive {total} records older than {settings.pii_hot_days} days")
    return 0 if report.ok else 1


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase one person's personal data now, hot stores and cold archives alike."""
    from alfred.lifecycle.erase import erase

    settings, store, client = _services()
    done = erase(
        settings,
        user=args.user,
        store=store,
        client=client,
        tenant=args.tenant,
        dry_run=args.dry_run,
    )
    verb = "would erase" if args.dry_run else "erased"
    for name, count in done.items():
        print(f"{name}: {verb} {count}")
    return 0


def add_lifecycle_commands(sub, command) -> None:
    """Add `anonymise` and `erase` to the command line (`command` makes a subcommand)."""
    anon = command(
        sub,
        "anonymise",
        cmd_anonymise,
        "archive, then anonymise personal data past PII_HOT_DAYS (the daily job)",
    )
    anon.add_argument(
        "--dry-run", action="store_true", help="report what it would do, change nothing"
    )
    anon.add_argument("--now", type=moment, help="run as if at this ISO-8601 time (with offset)")
    anon.add_argument("--tenant", help="only this tenant (default: all)")
    anon.add_argument(
        "--batch-size", type=batch_size, default=1000, help="records per batch (1000)"
    )
    erase = command(sub, "erase", cmd_erase, "erase one person's personal data now")
    erase.add_argument("--user", required=True, help="phone number, wa_id, BSUID or username")
    erase.add_argument("--tenant", help="only this tenant (default: all)")
    erase.add_argument("--dry-run", action="store_true", help="count, change nothing")
