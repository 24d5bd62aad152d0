"""Fetch one inbound message's media into the blob store and tell the orchestrator, once.

The steps of a fetch, each safe to repeat:
1. a row in `media` already says stored or failed → (re-)append its envelope, done;
2. take the fetch lock, so two workers never download the same media at once;
3. resolve the media id (a fresh URL every attempt: Meta's URLs live 5 minutes), stream the
   URL into the blob store through a reader that checks the size and the SHA-256 before the
   store makes the blob visible;
4. write the row, then append `media_stored` from it (append-once on `media:<id>`).
After the retries are spent the row says failed and `media_failed` is appended instead.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis
import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from alfred import metrics
from alfred.blobstore import BlobStore, BlobStoreUnavailable
from alfred.config import Settings
from alfred.db import session_scope
from alfred.envelope import base
from alfred.journals.journal import Journal
from alfred.media.download import LIMITS, MediaError, TokenRefused, UrlExpired, download, resolve
from alfred.models import StoredMedia
from alfred.streams import IngestStream
from alfred.tokens.store import current_token
from alfred.whatsapp.graph import GraphClient

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
RETRY_BASE_S = 2.0  # 2, 4, 8 … s
RETRY_CAP_S = 3600.0  # ten attempts span about eight hours, well inside Meta's 7 days
# Longer than the slowest fetch (100 MB): a lock outliving a dead worker only delays a retry.
LOCK_S = 900
MEDIA_KINDS = tuple(LIMITS)
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class MediaJob:
    """One media object of one inbound message: plain data, as the task carries it."""

    tenant_id: str
    phone_number_id: str | None
    message_id: str
    media_id: str
    kind: str
    timestamp: int
    raw: dict  # the message's media object as Meta sent it

    @property
    def entry_id(self) -> str:
        """Name the job in the media journal and the locks."""
        return f"{self.tenant_id}:{self.media_id}"

    def to_dict(self) -> dict:
        """Return the job as the task's argument."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MediaJob:
        """Rebuild a job from the task's argument."""
        return cls(**data)


def jobs_in(envelopes: list[dict]) -> list[MediaJob]:
    """Return a job for each message envelope that carries media with an id."""
    jobs = []
    for env in envelopes:
        kind = str(env.get("type") or "")
        obj = env.get(kind) if env.get("event") == "message" and kind in MEDIA_KINDS else None
        if isinstance(obj, dict) and obj.get("id"):
            jobs.append(
                MediaJob(
                    tenant_id=env["tenant_id"],
                    phone_number_id=env.get("phone_number_id"),
                    message_id=env["id"],
                    media_id=str(obj["id"]),
                    kind=kind,
                    timestamp=int(env.get("timestamp") or 0),
                    raw=obj,
                )
            )
    return jobs


def media_journal(client: redis.Redis) -> Journal:
    """Return the journal that keeps media jobs until their envelope is appended."""
    return Journal(client, "media")


def blob_key(job: MediaJob, mime_type: str) -> str:
    """Name the blob: per tenant and day, Meta's media id, no personal data."""
    day = datetime.fromtimestamp(job.timestamp or time.time(), UTC)
    ext = mimetypes.guess_extension(mime_type.split(";")[0].strip()) or ""
    return f"media/{job.tenant_id}/{day:%Y/%m/%d}/{job.media_id}{ext}"


@dataclass
class MediaOutcome:
    """What became of one attempt."""

    status: str  # stored | failed | retry | busy | already
    retry_in: float = 0.0
    reason: str | None = None
    blob_url: str | None = None


def retry_delay(attempt: int) -> float:
    """Return the back-off after a failed attempt, with jitter."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class MediaFetcher:
    """Everything a fetch needs, built once per worker process."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: redis.Redis,
        store: BlobStore,
        graph: GraphClient,
        http: requests.Session | None = None,
        on_token_refused: Callable[[str], None] = lambda tenant_id: None,
    ):
        self.settings = settings
        self.client = client
        self.store = store
        self.graph = graph
        self.http = http or requests.Session()
        self.on_token_refused = on_token_refused
        self.stream = IngestStream(client)
        self.journal = media_journal(client)
        self._release = client.register_script(_RELEASE)

    def fetch(self, job: MediaJob) -> MediaOutcome:
        """Run one attempt of a job: stored, failed for good, or a time to try again."""
        row = self._row(job)
        if row is not None:
            self._announce(job, row)
            return MediaOutcome("already", reason=row["status"])
        lock, token = f"alfred:media:fetching:{job.entry_id}", uuid.uuid4().hex
        if not self.client.set(lock, token, nx=True, ex=LOCK_S):
            return MediaOutcome("busy", retry_in=5.0, reason="fetch_in_progress")
        try:
            attempt = int(self.client.hincrby("alfred:media:attempts", job.entry_id, 1))
            try:
                row = self._store(job)
            except (MediaError, BlobStoreUnavailable) as exc:
                return self._after_error(job, exc, attempt)
            row["attempts"] = attempt
            self._announce(job, self._save(job, row))
            metrics.MEDIA.labels(job.tenant_id, "stored").inc()
            log.info(
                "media.stored",
                extra={"tenant_id": job.tenant_id, "media_id": job.media_id,
                       "bytes": row["bytes"], "attempt": attempt},
            )  # fmt: skip
            return MediaOutcome("stored", blob_url=row["blob_url"])
        finally:
            self._release(keys=[lock], args=[token])

    def _store(self, job: MediaJob) -> dict:
        """Download the media into the blob store; return its row's values."""
        token = current_token(self.settings.tenants[job.tenant_id], self.settings)
        try:
            return self._download(job, resolve(self.graph, job.media_id, token), token)
        except UrlExpired:
            # Meta's five minutes ran out between the two calls: once more, with a fresh URL.
            return self._download(job, resolve(self.graph, job.media_id, token), token)

    def _download(self, job: MediaJob, info, token) -> dict:
        key = blob_key(job, info.mime_type)
        with download(self.http, info, token, LIMITS[job.kind]) as body:
            url = self.store.put_stream(key, body, content_type=info.mime_type)
        return {
            "status": "stored",
            "mime_type": info.mime_type,
            "sha256": body.digest.hexdigest(),
            "bytes": body.size,
            "blob_url": url,
            "reason": None,
            "errors": None,
        }

    def _after_error(self, job: MediaJob, exc: Exception, attempt: int) -> MediaOutcome:
        """Retry later, or, when the error is final or the attempts are spent, say why once."""
        if isinstance(exc, MediaError):
            record = exc.as_record()
        else:  # the blob store could not take it
            record = {"reason": "blob_store_unavailable", "retryable": True, "message": str(exc)}
        reason = record["reason"]
        final = not record["retryable"] or attempt >= MAX_ATTEMPTS
        log.warning(
            "media.attempt_failed",
            extra={"tenant_id": job.tenant_id, "media_id": job.media_id, "attempt": attempt,
                   "reason": reason, "final": final, "detail": record["message"]},
        )  # fmt: skip
        if isinstance(exc, TokenRefused):
            self.on_token_refused(job.tenant_id)
        if not final:
            return MediaOutcome("retry", retry_in=retry_delay(attempt), reason=reason)
        row = {
            "status": "failed",
            "mime_type": job.raw.get("mime_type"),
            "sha256": None,
            "bytes": None,
            "blob_url": None,
            "reason": reason,
            "errors": [record],
            "attempts": attempt,
        }
        self._announce(job, self._save(job, row))
        metrics.MEDIA.labels(job.tenant_id, "failed").inc()
        return MediaOutcome("failed", reason=reason)

    def _row(self, job: MediaJob) -> dict | None:
        with session_scope(self.settings.database_url) as session:
            found = session.scalar(
                select(StoredMedia).where(
                    StoredMedia.tenant_id == job.tenant_id, StoredMedia.media_id == job.media_id
                )
            )
            return _values(found) if found is not None else None

    def _save(self, job: MediaJob, row: dict) -> dict:
        """Write the final row; if another worker wrote one first, that one stands."""
        try:
            with session_scope(self.settings.database_url) as session:
                session.add(
                    StoredMedia(
                        tenant_id=job.tenant_id,
                        media_id=job.media_id,
                        message_id=job.message_id,
                        kind=job.kind,
                        **row,
                    )
                )
        except IntegrityError:
            return self._row(job) or row
        return row

    def _announce(self, job: MediaJob, row: dict) -> None:
        """Append the row's envelope once, then forget the job."""
        event = "media_stored" if row["status"] == "stored" else "media_failed"
        envelope = base(
            tenant_id=job.tenant_id,
            event=event,
            id=f"media:{job.media_id}",
            phone_number_id=job.phone_number_id,
            timestamp=job.timestamp,
            received_at=time.time(),
            raw=job.raw,
        )
        envelope.update(
            message_id=job.message_id, media_id=job.media_id, mime_type=row["mime_type"]
        )
        if event == "media_stored":
            envelope.update(sha256=row["sha256"], bytes=row["bytes"], blob_url=row["blob_url"])
        else:
            envelope["errors"] = row["errors"]
        self.stream.append_once(
            tenant_id=job.tenant_id,
            event=event,
            dedupe_key=envelope["id"],
            payload=json.dumps(envelope, ensure_ascii=False, separators=(",", ":")),
        )
        self.journal.done(job.entry_id)
        self.client.hdel("alfred:media:attempts", job.entry_id)


def _values(row: StoredMedia) -> dict:
    return {
        "status": row.status,
        "mime_type": row.mime_type,
        "sha256": row.sha256,
        "bytes": row.bytes,
        "blob_url": row.blob_url,
        "reason": row.reason,
        "errors": row.errors,
        "attempts": row.attempts,
    }
