"""The Celery task of the PII lifecycle: `alfred.pii_lifecycle`, daily under beat."""

from __future__ import annotations

import logging

from celery import shared_task

from alfred import runtime
from alfred.blobstore import store_for
from alfred.lifecycle import service

log = logging.getLogger(__name__)

RETRY_AFTER_S = 15 * 60
MAX_RETRIES = 16


# Batches are small and committed, so a run cut short by its time limit resumes next time.
@shared_task(
    name="alfred.pii_lifecycle",
    bind=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=3300,
    time_limit=3600,
)
def pii_lifecycle(self, tenant_id: str | None = None) -> dict:
    """Archive, anonymise and expire personal data; retry the tenants that failed."""
    settings = runtime.settings()
    report = service.run(
        settings, store=store_for(settings), client=runtime.redis_client(), tenant=tenant_id
    )
    failed = [t for t, r in report.tenants.items() if r.error is not None]
    summary = {t: sum(r.anonymised.values()) for t, r in report.tenants.items()}
    log.info("lifecycle.run", extra={"anonymised": summary, "failed": failed})
    for tenant in failed:
        # Each failed tenant retries on its own; the others are done.
        if self.request.retries < MAX_RETRIES:
            self.retry(args=[tenant], countdown=RETRY_AFTER_S, throw=False)
    return summary
