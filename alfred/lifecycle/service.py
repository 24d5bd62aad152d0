"""The PII lifecycle, per tenant: archive what left the hot window, anonymise it, expire it.

Each batch is claimed, archived and anonymised in its own short transactions, recorded in
lifecycle_archives (models/lifecycle.py) before its archive is written. So a run killed at
any instant resumes where it stopped: a claimed batch is archived again under the same key,
a verified one is checked and anonymised, and no record joins a second archive.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from alfred.config import Settings
from alfred.db import get_engine, session_scope
from alfred.lifecycle import archive, entries, media, tables
from alfred.lifecycle.pseudonym import hash_key, pseudonym
from alfred.models import LifecycleArchive, Message, QuarantinedEvent
from alfred.models.base import utcnow
from alfred.models.lifecycle import CLAIMED, DONE, EXPIRED, VERIFIED

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
PREFIX = "archive"
NO_TENANT = "_none"
# Outbound statuses after which the outbox entry has done its job.
SENT_STATUSES = ("accepted", "sent", "delivered", "read", "failed", "send_failed")


@dataclass
class TenantReport:
    """What one tenant's run did (or, dry, would do)."""

    archived: Counter = field(default_factory=Counter)
    anonymised: Counter = field(default_factory=Counter)
    archives_written: int = 0
    archives_expired: int = 0
    outbox_sent_deleted: int = 0
    error: str | None = None


@dataclass
class Report:
    """The whole run: a report per tenant, and how long each batch held the database."""

    tenants: dict[str, TenantReport] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=dict)
    # transaction (claim, verified, anonymise, expire) -> how long each held the database
    lock_seconds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.tenants.values())


@dataclass
class Context:
    settings: Settings
    store: archive.Store
    client: redis.Redis
    now: datetime
    batch_size: int
    report: Report
    pseudonym: Callable[[object], str | None]
    # A hook for tests: called with a step's name between the steps of a batch.
    step: Callable[[str], None] = lambda _name: None

    @property
    def cutoff(self) -> datetime:
        return self.now - timedelta(days=self.settings.pii_hot_days)

    @property
    def expiry_day(self) -> str:
        days = self.settings.pii_hot_days + self.settings.pii_cold_days
        return (self.now - timedelta(days=days)).date().isoformat()

    def transaction(self, label: str):
        return _timed(self, label)


class _timed:
    """A session scope whose duration (the time the batch holds its locks) is recorded."""

    def __init__(self, ctx: Context, label: str):
        self.ctx, self.label = ctx, label

    def __enter__(self) -> Session:
        self.started = time.perf_counter()
        self.scope = session_scope(self.ctx.settings.database_url)
        return self.scope.__enter__()

    def __exit__(self, *exc) -> None:
        try:
            self.scope.__exit__(*exc)
        finally:
            seconds = time.perf_counter() - self.started
            self.ctx.report.lock_seconds.setdefault(self.label, []).append(seconds)


def tenants_of(settings: Settings) -> list[str]:
    """Every tenant whose data the lifecycle looks after: configured ones, and held events'."""
    with session_scope(settings.database_url) as session:
        held = set(session.scalars(select(QuarantinedEvent.tenant_id).distinct()))
        stored = set(session.scalars(select(Message.tenant_id).distinct()))
    return sorted(set(settings.tenants) | held | stored | {""})


def run(
    settings: Settings,
    *,
    store: archive.Store,
    client: redis.Redis,
    now: datetime | None = None,
    tenant: str | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    step: Callable[[str], None] | None = None,
) -> Report:
    """Run the lifecycle for one tenant or all; one tenant's failure leaves the others done."""
    report = Report()
    ctx = Context(
        settings=settings,
        store=store,
        client=client,
        now=now or utcnow(),
        batch_size=batch_size,
        report=report,
        pseudonym=lambda value, key=hash_key(settings): pseudonym(key, value),
    )
    if step is not None:
        ctx.step = step
    names = [tenant] if tenant is not None else tenants_of(settings)
    for tenant_id in names:
        tenant_report = report.tenants.setdefault(tenant_id, TenantReport())
        try:
            if dry_run:
                _survey(ctx, tenant_id, tenant_report)
            else:
                _run_tenant(ctx, tenant_id, tenant_report)
        except Exception as exc:
            tenant_report.error = f"{type(exc).__name__}: {exc}"
            log.exception("lifecycle.tenant_failed", extra={"tenant_id": tenant_id})
    if not dry_run:
        if tenant is None and report.ok:
            # Every tenant's old entries are archived and deleted: trim what no tenant owns.
            for source in entries.STREAMS:
                report.trimmed[source.stream] = source.trim(client, ctx.cutoff)
        _flush_freed_pages(settings)
    return report


def _run_tenant(ctx: Context, tenant_id: str, report: TenantReport) -> None:
    with session_scope(ctx.settings.database_url) as session:
        unfinished = session.scalars(
            select(LifecycleArchive)
            .where(
                LifecycleArchive.tenant_id == tenant_id,
                LifecycleArchive.state.in_((CLAIMED, VERIFIED)),
            )
            .order_by(LifecycleArchive.id)
        ).all()
    for manifest in unfinished:
        log.info("lifecycle.resume", extra={"tenant_id": tenant_id, "archive_id": manifest.id})
        _finish(ctx, manifest, report)
    for source in tables.SOURCES:
        while (manifest := _claim_rows(ctx, tenant_id, source)) is not None:
            _finish(ctx, manifest, report)
    for source in entries.STREAMS:
        while (claimed := _claim_entries(ctx, tenant_id, source)) is not None:
            _finish(ctx, claimed[0], report, claimed[1])
    report.outbox_sent_deleted += _delete_sent_outbox(ctx, tenant_id)
    _expire(ctx, tenant_id, report)
    log.info(
        "lifecycle.tenant_done",
        extra={
            "tenant_id": tenant_id,
            "archived": sum(report.archived.values()),
            "expired": report.archives_expired,
        },
    )


def _new_manifest(session: Session, tenant_id: str, source: str, day: str) -> LifecycleArchive:
    manifest = LifecycleArchive(tenant_id=tenant_id, source=source, day=day, state=CLAIMED)
    session.add(manifest)
    session.flush()
    manifest.key = f"{PREFIX}/{tenant_id or NO_TENANT}/{day}/{source}-{manifest.id:09d}.jsonl.gz"
    return manifest


def _claim_rows(ctx: Context, tenant_id: str, source: tables.TableSource):
    with ctx.transaction("claim") as session:
        day = source.oldest_due(session, tenant_id, ctx.cutoff)
        if day is None:
            return None
        manifest = _new_manifest(session, tenant_id, source.name, day.isoformat())
        source.claim(session, tenant_id, ctx.cutoff, day, manifest.id, ctx.batch_size)
    ctx.step("claimed")
    return manifest


def _claim_entries(ctx: Context, tenant_id: str, source: entries.StreamSource):
    with session_scope(ctx.settings.database_url) as session:
        # Claims go forward in the stream: the newest claim ends furthest on.
        after = session.scalar(
            select(LifecycleArchive.last_entry)
            .where(LifecycleArchive.tenant_id == tenant_id, LifecycleArchive.source == source.name)
            .order_by(LifecycleArchive.id.desc())
            .limit(1)
        )
    batch = source.next_batch(ctx.client, tenant_id, after, ctx.cutoff, ctx.batch_size)
    if not batch:
        return None
    with ctx.transaction("claim") as session:
        manifest = _new_manifest(
            session, tenant_id, source.name, entries.entry_day(batch[0][0]).isoformat()
        )
        manifest.first_entry, manifest.last_entry = batch[0][0], batch[-1][0]
    ctx.step("claimed")
    return manifest, batch


def _finish(ctx: Context, manifest: LifecycleArchive, report: TenantReport, batch=None) -> None:
    """Archive a claimed batch (again, if its archive is missing or corrupt), then anonymise."""
    records = None
    if manifest.state == VERIFIED:
        records = archive.read_verified(
            ctx.store, manifest.key, records=manifest.records, digest=manifest.sha256
        )
        if records is None:
            log.warning(
                "lifecycle.archive_corrupt",
                extra={"tenant_id": manifest.tenant_id, "archive_id": manifest.id},
            )
    source = tables.BY_NAME.get(manifest.source)
    if records is None:
        records = _records(ctx, manifest, batch)
        if source is not None and source.blobs:
            # Each blob copied cold and its SHA-256 checked before the archive names it.
            records = media.to_cold(ctx.store, manifest.key, records)
        written = archive.write_verified(ctx.store, manifest.key, records)
        with ctx.transaction("verified") as session:
            row = session.get(LifecycleArchive, manifest.id)
            row.state, row.records, row.sha256 = VERIFIED, written.records, written.sha256
            row.verified_at = utcnow()
        manifest.state, manifest.records = VERIFIED, written.records
        manifest.sha256 = written.sha256
        report.archives_written += 1
        report.archived[manifest.source] += written.records
        ctx.step("verified")
    if source is not None:
        if source.blobs:
            # Before the rows forget them: a run killed here deletes them again, harmlessly.
            media.drop_hot(ctx.store, records)
        # Computed from the verified archive before the transaction: the lock is the write.
        changes = source.changes(records, ctx.pseudonym)
        with ctx.transaction("anonymise") as session:
            count = source.anonymise(session, manifest.id, changes, ctx.cutoff)
            _mark_done(session, manifest.id)
    else:
        count = entries.BY_NAME[manifest.source].delete(ctx.client, [r["id"] for r in records])
        with ctx.transaction("done") as session:
            _mark_done(session, manifest.id)
    report.anonymised[manifest.source] += count
    ctx.step("done")


def _records(ctx: Context, manifest: LifecycleArchive, batch) -> list[dict]:
    if manifest.source in tables.BY_NAME:
        with session_scope(ctx.settings.database_url) as session:
            return tables.BY_NAME[manifest.source].records(session, manifest.id)
    stream = entries.BY_NAME[manifest.source]
    if batch is None:
        # Entries are deleted only after their archive was verified: the range is whole.
        batch = stream.entries_between(
            ctx.client, manifest.tenant_id, manifest.first_entry, manifest.last_entry
        )
        if manifest.records is not None and len(batch) != manifest.records:
            raise archive.ArchiveError(
                f"archive {manifest.id} is unreadable and {manifest.records - len(batch)} "
                "of its entries are gone from the stream"
            )
    return entries.StreamSource.records(batch, stream.stream)


def _mark_done(session: Session, archive_id: int) -> None:
    row = session.get(LifecycleArchive, archive_id)
    row.state, row.done_at = DONE, utcnow()


def _delete_sent_outbox(ctx: Context, tenant_id: str) -> int:
    def is_sent(candidates: dict[str, tuple[str, str]]) -> list[str]:
        mine = {i: key for i, (t, key) in candidates.items() if t == tenant_id}
        if not mine:
            return []
        with session_scope(ctx.settings.database_url) as session:
            sent = set(
                session.scalars(
                    select(Message.idempotency_key).where(
                        Message.tenant_id == tenant_id,
                        Message.idempotency_key.in_(set(mine.values())),
                        Message.status.in_(SENT_STATUSES),
                    )
                )
            )
        return [i for i, key in mine.items() if key in sent]

    ids = entries.sent_outbox_entries(ctx.client, is_sent)
    return entries.OUTBOX.delete(ctx.client, ids) if ids else 0


def _expire(ctx: Context, tenant_id: str, report: TenantReport) -> None:
    """Delete the cold archives whose every record is past the cold window."""
    with session_scope(ctx.settings.database_url) as session:
        due = session.scalars(
            select(LifecycleArchive).where(
                LifecycleArchive.tenant_id == tenant_id,
                LifecycleArchive.state == DONE,
                LifecycleArchive.day < ctx.expiry_day,
            )
        ).all()
    for manifest in due:
        source = tables.BY_NAME.get(manifest.source)
        if source is not None and source.blobs:
            media.drop_cold(ctx.store, manifest.key)
        ctx.store.delete(manifest.key)
        with ctx.transaction("expire") as session:
            row = session.get(LifecycleArchive, manifest.id)
            row.state, row.expired_at = EXPIRED, utcnow()
        report.archives_expired += 1


def _survey(ctx: Context, tenant_id: str, report: TenantReport) -> None:
    """Count what a run would archive and expire, changing nothing."""
    with session_scope(ctx.settings.database_url) as session:
        for source in tables.SOURCES:
            age = source.column(source.age)
            report.archived[source.name] = session.scalar(
                select(func.count())
                .select_from(source.model)
                .where(
                    source.model.tenant_id == tenant_id,
                    source.model.archive_id.is_(None),
                    age < ctx.cutoff,
                )
            )
        report.archives_expired = session.scalar(
            select(func.count())
            .select_from(LifecycleArchive)
            .where(
                LifecycleArchive.tenant_id == tenant_id,
                LifecycleArchive.state == DONE,
                LifecycleArchive.day < ctx.expiry_day,
            )
        )
    for source in entries.STREAMS:
        report.archived[source.name] = len(
            source.next_batch(ctx.client, tenant_id, None, ctx.cutoff, 10**9, one_day=False)
        )


def _flush_freed_pages(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        # secure_delete zeroes freed pages of the file; the old pages' copies in the WAL go
        # when it is checkpointed and truncated.
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
