"""Personal data of two ages in every hot store, each word and number unique to its record."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from alfred.blobstore import BlobStore
from alfred.db import get_engine, session_scope
from alfred.lifecycle import archive
from alfred.lifecycle.service import PREFIX
from alfred.models import (
    Base,
    CustomerWindow,
    Message,
    MessageStatus,
    QuarantinedEvent,
    SendAttempt,
    StoredMedia,
)
from alfred.streams import INGEST_STREAM, OUTBOUND_GROUP, OUTBOX_STREAM

NOW = datetime.fromisoformat("2027-01-01T20:18:57+00:00")
OLD = NOW - timedelta(days=40)  # past the hot window
NEW = NOW - timedelta(days=5)  # inside it
TENANTS = ("home", "biz")


@dataclass
class Seeded:
    """The secrets planted: old ones must leave the hot stores, new ones stay."""

    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    # tag (old|new, tenant, n) -> that person's secrets
    people: dict[str, list[str]] = field(default_factory=dict)
    # hot blob key -> (old|new, its sha256)
    blobs: dict[str, tuple[str, str]] = field(default_factory=dict)


def _ms(at: datetime, n: int) -> str:
    return f"{int(at.timestamp() * 1000) + n}-0"


def media_key(tenant: str, at: datetime, tag: str) -> str:
    """The hot blob key media/ writes (alfred/media/service.py's naming)."""
    return f"media/{tenant}/{at:%Y/%m/%d}/m{tag}.jpg"


def seed(
    database_url: str,
    client,
    *,
    per_tenant: int = 3,
    now: datetime = NOW,
    store: BlobStore | None = None,
) -> Seeded:
    """Plant messages, statuses, attempts, held events, windows, media and stream entries."""
    seeded = Seeded()
    old, new = now - (NOW - OLD), now - (NOW - NEW)
    rows = []
    stream_rows = []
    for age, label, bucket in ((old, "old", seeded.old), (new, "new", seeded.new)):
        for t_index, tenant in enumerate(TENANTS):
            for n in range(per_tenant):
                tag = f"{label}{tenant}{n}"
                phone = f"1555{t_index}{'0' if label == 'old' else '9'}{n:05d}"
                words = f"secretword{tag}"
                # Shaped like Meta's: the phone number in base64 (the simulator's new_wamid).
                wamid_in = "wamid.HBgL" + base64.b64encode(f"{phone}in{tag}".encode()).decode()
                wamid_out = "wamid.HBgL" + base64.b64encode(f"{phone}out{tag}".encode()).decode()
                person = [phone, words, f"user{tag}", f"US.bsuid{tag}", wamid_in, wamid_out]
                person.append(f"outbox{words}")
                seeded.people[tag] = person
                bucket += person
                at = age + timedelta(minutes=n)
                rows += [
                    Message(
                        tenant_id=tenant,
                        direction="inbound",
                        wamid=wamid_in,
                        wa_id=phone,
                        user_id=f"US.bsuid{tag}",
                        username=f"user{tag}",
                        type="text",
                        body=words,
                        payload={"text": {"body": words}},
                        status="received",
                        created_at=at,
                        updated_at=at,
                    ),
                    Message(
                        tenant_id=tenant,
                        direction="outbound",
                        wamid=wamid_out,
                        idempotency_key=f"key-{tag}",
                        wa_id=phone,
                        type="text",
                        body=f"reply{words}",
                        payload={"to": phone, "text": f"reply{words}"},
                        status="sent",
                        error_detail=f"detail{words}",
                        created_at=at,
                        updated_at=at,
                    ),
                    MessageStatus(
                        tenant_id=tenant,
                        wamid=wamid_out,
                        status="failed",
                        errors=[
                            {
                                "code": 131026,
                                "title": "Undeliverable",
                                "error_data": {"details": f"to {phone}"},
                            }
                        ],
                        created_at=at,
                        updated_at=at,
                    ),
                    SendAttempt(
                        tenant_id=tenant,
                        idempotency_key=f"key-{tag}",
                        attempt=1,
                        wamid=wamid_out,
                        call_id=f"call-{tag}",
                        http_status=200,
                        payload={"to": phone, "type": "text", "text": {"body": f"reply{words}"}},
                        created_at=at,
                        updated_at=at,
                    ),
                    QuarantinedEvent(
                        tenant_id=tenant,
                        fingerprint=f"fp-{tag}",
                        reason="stale",
                        detail=f"held {phone}",
                        event="message",
                        dedupe_key=f"{phone}:{tag}",
                        envelope={"from": phone, "text": words},
                        delivery=json.dumps({"from": phone, "body": words}),
                        raw={"from": phone},
                        received_at=at,
                        created_at=at,
                        updated_at=at,
                    ),
                    CustomerWindow(
                        tenant_id=tenant,
                        user_key=phone,
                        last_inbound_at=at,
                        created_at=at,
                        updated_at=at,
                    ),
                ]
                if store is not None:
                    # The photo's bytes are the person's: they must leave the hot store too.
                    photo = f"photo{words}".encode()
                    key = media_key(tenant, at, tag)
                    seeded.blobs[key] = (label, hashlib.sha256(photo).hexdigest())
                    rows.append(
                        StoredMedia(
                            tenant_id=tenant,
                            media_id=f"m{tag}",
                            message_id=wamid_in,
                            kind="image",
                            status="stored",
                            mime_type="image/jpeg",
                            sha256=hashlib.sha256(photo).hexdigest(),
                            bytes=len(photo),
                            blob_url=store.put_bytes(key, photo, content_type="image/jpeg"),
                            errors=[{"reason": "download_incomplete", "message": f"to {phone}"}],
                            attempts=2,
                            created_at=at,
                            updated_at=at,
                        )
                    )
                envelope = json.dumps({"from": phone, "text": words, "user": f"user{tag}"})
                outbox = json.dumps(
                    {"tenant_id": tenant, "to": phone, "type": "text", "text": f"outbox{words}"}
                )
                stream_rows.append((at, t_index * 100 + n, tenant, envelope, outbox))
    with session_scope(database_url) as session:
        session.add_all(rows)
    stream_rows.sort(key=lambda r: (r[0], r[1]))
    for at, n, tenant, envelope, outbox in stream_rows:
        client.xadd(
            INGEST_STREAM,
            {"tenant_id": tenant, "event": "message", "payload": envelope},
            id=_ms(at, n),
        )
        client.xadd(OUTBOX_STREAM, {"payload": outbox}, id=_ms(at, n))
    # The bridge read and acknowledged every outbox entry (rejected: no message row matches).
    client.xgroup_create(OUTBOX_STREAM, OUTBOUND_GROUP, id="0")
    read = client.xreadgroup(OUTBOUND_GROUP, "c1", {OUTBOX_STREAM: ">"}, count=10_000)
    client.xack(OUTBOX_STREAM, OUTBOUND_GROUP, *[i for _, es in read for i, _ in es])
    return seeded


def hot_text(database_url: str, client) -> str:
    """Everything the hot stores hold, as one text: every table, every stream, every key."""
    parts = []
    with get_engine(database_url).connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                parts.append(repr(tuple(row)))
    for stream in (INGEST_STREAM, OUTBOX_STREAM):
        parts += [repr(e) for e in client.xrange(stream)]
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            parts.append(repr((key, client.get(key))))
        elif kind == b"hash":
            parts.append(repr((key, client.hgetall(key))))
        else:
            parts.append(repr(key))
    return "\n".join(parts)


# Run in a child process: closing any descriptor of the database file drops every POSIX lock
# this process holds on it, SQLite's own included ("How To Corrupt An SQLite Database File",
# 2.2). Read here, a worker subprocess closing its last connection afterwards would think it
# the last user of the file and delete the -wal and -shm under this process's open connections
# (docs/reliability.md: the disk I/O error of the shared SQLite file).
_READ_FILES = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as handle:
            sys.stdout.buffer.write(handle.read())
    except FileNotFoundError:
        pass
"""


def sqlite_file_text(database_url: str) -> str:
    """The raw bytes of a SQLite database file and its WAL, as text (free pages included)."""
    path = database_url.removeprefix("sqlite:///")
    done = subprocess.run(
        [sys.executable, "-c", _READ_FILES, path, path + "-wal"], capture_output=True, check=True
    )
    return done.stdout.decode("latin-1")


def archived(store: BlobStore) -> list[dict]:
    """Every record of every cold archive."""
    return [r for key in store.list(PREFIX + "/") for r in archive.decode(store.get_bytes(key))]


def counts(database_url: str) -> dict:
    """Rows per table and tenant."""
    found = {}
    with session_scope(database_url) as session:
        for model in (Message, MessageStatus, SendAttempt, QuarantinedEvent, StoredMedia):
            found[model.__tablename__] = dict(
                session.execute(
                    select(model.tenant_id, func.count()).group_by(model.tenant_id)
                ).all()
            )
    return found
