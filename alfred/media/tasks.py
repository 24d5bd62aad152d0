"""Celery tasks of inbound media: thin wrappers over alfred.media.service."""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from celery import Task, shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from alfred import runtime
from alfred.blobstore import store_for
from alfred.journals.journal import journal_for_publish, register
from alfred.media.service import MediaFetcher, MediaJob, media_journal
from alfred.tokens.tasks import report_expired
from alfred.whatsapp.graph import GraphClient

log = logging.getLogger(__name__)

# A job still in the journal this long after its task was published (plus any countdown) is
# re-published by the sweeper: longer than the slowest fetch, a 100 MB document.
REDRIVE_AFTER_S = 900.0


class JournaledFetch(Task):
    """Journal each media job before publishing, retries included, until its envelope is out."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, **options):
        job = (args or [None])[0] or (kwargs or {}).get("job")
        options = journal_for_publish(
            media_journal(runtime.redis_client()),
            MediaJob.from_dict(job).entry_id,
            json.dumps(job, ensure_ascii=False),
            options,
            redrive_after_s=REDRIVE_AFTER_S,
        )
        # Flower shows the job by tenant and ids: the raw object may hold a caption.
        options["argsrepr"] = (
            f"[{{tenant_id: {job['tenant_id']!r}, media_id: {job['media_id']!r}}}]"
        )
        return super().apply_async([job], None, task_id, producer, **options)


@lru_cache(maxsize=1)
def fetcher() -> MediaFetcher:
    """Build this process's fetcher: one Graph client, the blob store, one HTTP pool."""
    settings = runtime.settings()
    return MediaFetcher(
        settings=settings,
        client=runtime.redis_client(),
        store=store_for(settings),
        graph=GraphClient(settings.graph_api_url, settings.graph_api_version),
        on_token_refused=report_expired,
    )


@shared_task(
    name="alfred.fetch_media",
    base=JournaledFetch,
    bind=True,
    max_retries=None,  # the job's own attempt count decides (service.MAX_ATTEMPTS)
    autoretry_for=(RedisError, OperationalError),
    retry_backoff=1,
    retry_backoff_max=60,
)
def fetch_media(self, job: dict) -> str:
    """Fetch one inbound media object into the blob store and announce it on «alfred-ingest»."""
    outcome = fetcher().fetch(MediaJob.from_dict(job))
    if outcome.status in ("retry", "busy"):
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


def publish_fetches(jobs: list[dict]) -> None:
    """Publish the fetches of journaled jobs; one the broker refuses waits for the sweeper."""
    for job in jobs:
        try:
            fetch_media.apply_async(args=[job])
        except Exception:  # the job stays journaled: never fail the ingest for it
            log.warning("media.publish_failed", extra={"tenant_id": job.get("tenant_id")})


def redrive_fetch(entry_id: str) -> None:
    """Publish the fetch of a journaled job again (the sweeper)."""
    record = media_journal(runtime.redis_client()).get(entry_id)
    if record is not None:
        fetch_media.apply_async(args=[json.loads(record)])


register("media", media_journal, redrive_fetch, task="alfred.fetch_media", lease=REDRIVE_AFTER_S)
