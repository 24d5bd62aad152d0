"""Erase one person now: their rows anonymised, stream entries deleted, archives rewritten."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import redis
from sqlalchemy import delete, or_, select

from alfred.config import Settings
from alfred.db import session_scope
from alfred.lifecycle import archive, entries, media, tables
from alfred.lifecycle.pseudonym import hash_key, pseudonym
from alfred.models import (
    CustomerWindow,
    LifecycleArchive,
    Message,
    MessageStatus,
    QuarantinedEvent,
    SendAttempt,
    StoredMedia,
)
from alfred.models.base import utcnow
from alfred.models.lifecycle import DONE, VERIFIED

SCAN = 1000


def identities(user: str) -> set[str]:
    """The forms a person's id takes in the stores: as given, and a phone number's digits."""
    forms = {user.strip()}
    digits = "".join(ch for ch in user if ch.isdigit())
    if digits and set(user.strip()) <= set("+0123456789 -()"):
        forms.add(digits)
    return {f for f in forms if f}


def _mentions(value: object, forms: set[str]) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return any(form in text for form in forms)


def erase(
    settings: Settings,
    *,
    user: str,
    store: archive.Store,
    client: redis.Redis,
    tenant: str | None = None,
    dry_run: bool = False,
) -> Counter:
    """Remove a person's personal data from every hot store and every cold archive."""
    forms = identities(user)
    key = hash_key(settings)
    alias = {pseudonym(key, f) for f in forms}
    done: Counter = Counter()
    p: Callable[[object], str | None] = lambda value: pseudonym(key, value)  # noqa: E731
    with session_scope(settings.database_url) as session:
        scope = (Message.tenant_id == tenant,) if tenant is not None else ()
        people = (Message.wa_id, Message.user_id, Message.username)
        rows = session.scalars(
            select(Message).where(*scope, or_(*(c.in_(forms | alias) for c in people)))
        ).all()
        wamids = {r.wamid for r in rows if r.wamid}
        keys = {r.idempotency_key for r in rows if r.idempotency_key}
        done["messages"] = _scrub(session, tables.BY_NAME["messages"], rows, p, dry_run)
        statuses = session.scalars(select(MessageStatus).where(MessageStatus.wamid.in_(wamids)))
        done["message_statuses"] = _scrub(
            session, tables.BY_NAME["message_statuses"], statuses.all(), p, dry_run
        )
        attempts = session.scalars(select(SendAttempt).where(SendAttempt.idempotency_key.in_(keys)))
        done["send_attempts"] = _scrub(
            session, tables.BY_NAME["send_attempts"], attempts.all(), p, dry_run
        )
        # Their media: the hot blob now; a cold copy when its archive is rewritten below.
        blobs = session.scalars(
            select(StoredMedia).where(
                *_tenant(StoredMedia, tenant), StoredMedia.message_id.in_(wamids)
            )
        ).all()
        media_ids = {row.id for row in blobs}
        if not dry_run:
            for row in blobs:
                media.forget(store, row.blob_url)
        done["media"] = _scrub(session, tables.BY_NAME["media"], blobs, p, dry_run)
        held = [
            row
            for row in session.scalars(select(QuarantinedEvent).order_by(QuarantinedEvent.id))
            if tenant in (None, row.tenant_id)
            and _mentions([row.envelope, row.delivery, row.raw, row.detail, row.dedupe_key], forms)
        ]
        done["quarantined_events"] = _scrub(
            session, tables.BY_NAME["quarantined_events"], held, p, dry_run
        )
        windows = select(CustomerWindow).where(CustomerWindow.user_key.in_(forms))
        if tenant is not None:
            windows = windows.where(CustomerWindow.tenant_id == tenant)
        done["customer_windows"] = len(session.scalars(windows).all())
        if not dry_run:
            session.execute(
                delete(CustomerWindow).where(
                    CustomerWindow.user_key.in_(forms),
                    *((CustomerWindow.tenant_id == tenant,) if tenant is not None else ()),
                )
            )
        if dry_run:
            session.rollback()
    for source in entries.STREAMS:
        ids = [
            i
            for i, fields in _all_entries(client, source.stream)
            if (tenant is None or entries.entry_tenant(fields) == tenant)
            and _mentions(fields, forms)
        ]
        done[source.name] = len(ids)
        if ids and not dry_run:
            source.delete(client, ids)
    done["archives_rewritten"] = _rewrite_archives(
        settings, store, forms, p, tenant=tenant, dry_run=dry_run, media_ids=media_ids
    )
    return done


def _scrub(session, source: tables.TableSource, rows: list, p, dry_run: bool) -> int:
    now = utcnow()
    for row in rows:
        values = {c.name: getattr(row, c.key) for c in source.model.__table__.columns}
        if not dry_run:
            for name, value in source.scrub(values, p, now).items():
                setattr(row, name, value)
    return len(rows)


def _all_entries(client: redis.Redis, stream: str):
    start = "-"
    while batch := client.xrange(stream, min=start, max="+", count=SCAN):
        for raw_id, fields in batch:
            entry_id = raw_id.decode()
            yield entry_id, {k.decode(): v.decode() for k, v in fields.items()}
        start = f"({batch[-1][0].decode()}"


def _tenant(model, tenant: str | None) -> tuple:
    return (model.tenant_id == tenant,) if tenant is not None else ()


def _theirs(record: dict, forms: set[str], media_ids: set[int]) -> bool:
    # A media record names its message by wamid (base64, not the digits): matched by row id.
    if record.get("table") == "media" and record.get("id") in media_ids:
        return True
    return _mentions(record, forms)


def _rewrite_archives(settings, store, forms, p, *, tenant, dry_run, media_ids) -> int:
    with session_scope(settings.database_url) as session:
        query = select(LifecycleArchive).where(LifecycleArchive.state.in_((VERIFIED, DONE)))
        if tenant is not None:
            query = query.where(LifecycleArchive.tenant_id == tenant)
        manifests = session.scalars(query.order_by(LifecycleArchive.id)).all()
    rewritten = 0
    for manifest in manifests:
        records = archive.decode(store.get_bytes(manifest.key))
        theirs = [_theirs(r, forms, media_ids) for r in records]
        changed = [_anonymised(r, p) if t else r for r, t in zip(records, theirs, strict=True)]
        if changed == records:
            continue
        rewritten += 1
        if dry_run:
            continue
        for record, mine in zip(records, theirs, strict=True):
            if mine and record.get("table") == "media":
                media.forget(store, record.get("blob_url"))
        written = archive.write_verified(store, manifest.key, changed)
        with session_scope(settings.database_url) as session:
            row = session.get(LifecycleArchive, manifest.id)
            row.sha256, row.records = written.sha256, written.records
    return rewritten


def _anonymised(record: dict, p) -> dict:
    source = tables.BY_NAME.get(record.get("table", ""))
    if source is None:
        # A stream entry: its id stays (counted), its fields go.
        return {"stream": record.get("stream"), "id": record.get("id"), "fields": {}}
    if source.scrub is None:
        return {
            "table": record["table"],
            "tenant_id": record.get("tenant_id"),
            "user_key": p(record.get("user_key")),
        }
    scrubbed = {
        k: v.isoformat() if hasattr(v, "isoformat") else v
        for k, v in source.scrub(record, p, utcnow()).items()
    }
    anonymised = {**record, **scrubbed}
    anonymised.pop("hot_url", None)
    return anonymised
