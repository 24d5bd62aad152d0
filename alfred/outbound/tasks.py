"""Celery tasks of the outbound path: thin wrappers over alfred.outbound.service.

The only module of the package that publishes its tasks: the sweeper's re-drives of the
outbound, audit and read journals are here too, registered with the sweeper below.
"""

from __future__ import annotations

import inspect
import json
import logging
from functools import lru_cache

from celery import Task, shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from alfred import runtime
from alfred.journals.journal import REDRIVE_AFTER_S, journal_for_publish, register
from alfred.outbound import receipts
from alfred.outbound.audit_batch import (
    AUDIT_JOURNAL,
    KICK_EVERY_S,
    KICK_KEY,
    READY_KEY,
    audit_journal,
    write_pending,
)
from alfred.outbound.audit_batch import GATHER_S as AUDIT_GATHER_S
from alfred.outbound.pending import OUTBOUND_JOURNAL, entry_id, outbound_journal
from alfred.outbound.poison import count_crash
from alfred.outbound.ratelimit import SendLimiter
from alfred.outbound.receipts import READ_JOURNAL, read_journal
from alfred.outbound.service import Sender, stamp
from alfred.outbound.tier import TierMeter
from alfred.tokens.store import current_token
from alfred.tokens.tasks import request_rotation
from alfred.whatsapp.errors import TransientError
from alfred.whatsapp.graph import GraphClient

log = logging.getLogger(__name__)


class JournaledSend(Task):
    """Journal each message with a fixed idempotency key before publishing, retries included.

    Celery's Redis transport may lose a task popped by a worker that is killed at once; the
    journal keeps the message until its outcome is recorded (alfred/journals/journal.py).
    """

    def apply_async(
        self,
        args=None,
        kwargs=None,
        task_id=None,
        producer=None,
        link=None,
        link_error=None,
        shadow=None,
        **options,
    ):
        message = args[0] if args else (kwargs or {}).get("message")
        if isinstance(message, dict):
            message = stamp(message)
            options = journal_for_publish(
                outbound_journal(runtime.redis_client()),
                entry_id(message),
                json.dumps(message, ensure_ascii=False),
                options,
                redrive_after_s=REDRIVE_AFTER_S,
                # A new message past the cap raises BacklogFull to the caller (back-pressure);
                # a retry or a re-drive is already journaled and always goes.
                max_backlog=runtime.settings().outbound_max_backlog,
            )
            args, kwargs = [message], {}
            # What Flower and the worker's log show of the task: the message names its user
            # and carries their conversation. (It also spares Celery's saferepr of the whole
            # message: 13 % of a publish in the profiler, within the noise on the clock.)
            options["argsrepr"] = repr_of(message)
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """A crash (not Meta, not Redis): count it, and dead-letter the message at the fifth."""
        message = args[0] if args else (kwargs or {}).get("message")
        if not isinstance(message, dict) or not message.get("idempotency_key"):
            return
        try:
            count_crash(runtime.redis_client(), sender(), message, exc)
        except Exception:  # the journal still holds it: the next crash counts again
            log.exception("send.crash_not_counted")


def repr_of(message: dict) -> str:
    """Show a message by tenant, idempotency key and type: no recipient, no content."""
    return (
        f"[{{tenant_id: {message.get('tenant_id')!r}, "
        f"idempotency_key: {message.get('idempotency_key')!r}, type: {message.get('type')!r}}}]"
    )


@lru_cache(maxsize=1)
def sender() -> Sender:
    """Build this process's sender: one pooled Graph client, the shared limits."""
    settings = runtime.settings()
    client = runtime.redis_client()
    return Sender(
        settings=settings,
        client=client,
        graph=GraphClient(settings.graph_api_url, settings.graph_api_version),
        limiter=SendLimiter(client),
        tier=TierMeter(client, limit=settings.tier_limit),
        chunk_order=settings.chunk_order,
        publish_audit=publish_audit,
        request_rotation=request_rotation,
    )


@shared_task(
    name="alfred.send_message",
    base=JournaledSend,
    bind=True,
    max_retries=None,  # our own attempt count, kept in the database, decides (service.MAX_ATTEMPTS)
    autoretry_for=(RedisError, OperationalError),
    retry_backoff=1,
    retry_backoff_max=30,
)
def send_message(self, message: dict) -> str:
    """Send one message to a WhatsApp user through the Graph API, exactly once in effect."""
    outcome = sender().send(message)
    if outcome.status == "retry":
        if outcome.attempts_made is not None:
            # The calls made so far travel with the message, journal included, so the row's
            # count needs no read before each call.
            raise self.retry(
                countdown=outcome.retry_in,
                args=[{**message, "attempts_made": outcome.attempts_made}],
            )
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(
    name="alfred.record_sends",
    ignore_result=True,
    autoretry_for=(RedisError, OperationalError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    # Beyond these, the records wait in the journal for the sweeper: nothing is dropped.
    max_retries=8,
)
def record_sends() -> int:
    """Write the accepted calls waiting in Redis to the database, a batch at a time."""
    return write_pending(settings=runtime.settings(), client=runtime.redis_client())


def publish_audit() -> None:
    """Publish the batch writer; if the broker refuses, the sweeper re-drives the records."""
    try:
        # Wait a moment so a batch gathers: under load, one task writes hundreds of records.
        record_sends.apply_async(countdown=AUDIT_GATHER_S)
    except Exception:  # the send itself succeeded: never fail it for its bookkeeping
        log.warning("audit.publish_failed", exc_info=True)


class JournaledRead(Task):
    """Journal each read receipt before publishing, retries included, until Meta answered.

    As JournaledSend: a task lost with a killed worker is re-driven by the sweeper. A receipt
    that fails for good (a permanent error, retries exhausted) leaves the journal with a log
    line; marking a message read twice has no second effect at Meta.
    """

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, **options):
        receipt = inspect.signature(self.run).bind(*(args or ()), **(kwargs or {})).arguments
        options = journal_for_publish(
            read_journal(runtime.redis_client()),
            receipts.entry_id(receipt["tenant_id"], receipt["message_id"]),
            json.dumps(receipt),
            options,
            redrive_after_s=REDRIVE_AFTER_S,
        )
        return super().apply_async(None, receipt, task_id, producer, **options)

    def on_success(self, retval, task_id, args, kwargs):
        self._forget(kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        log.warning(
            "read.failed",
            extra={"tenant_id": kwargs.get("tenant_id"), "wamid": kwargs.get("message_id")},
        )
        self._forget(kwargs)

    @staticmethod
    def _forget(receipt: dict) -> None:
        read_journal(runtime.redis_client()).done(
            receipts.entry_id(receipt.get("tenant_id"), receipt.get("message_id"))
        )


@shared_task(
    name="alfred.mark_as_read",
    base=JournaledRead,
    autoretry_for=(TransientError,),
    retry_backoff=2,
    max_retries=5,
)
def mark_as_read(tenant_id: str, message_id: str, typing_indicator: bool = False) -> bool:
    """Mark an inbound message read (blue ticks), optionally with a typing indicator."""
    settings = runtime.settings()
    tenant = settings.tenants[tenant_id]
    return sender().graph.mark_as_read(
        tenant.phone_number_id, current_token(tenant, settings), message_id, typing_indicator
    )


def enqueue(message: dict) -> dict:
    """Stamp, journal and publish a send_message task; return the message as stamped."""
    message = stamp(message)
    send_message.apply_async(args=[message])
    return message


def redrive_send(journal_entry: str) -> None:
    """Publish the send task again for a journaled message (the sweeper's re-drive)."""
    record = outbound_journal(runtime.redis_client()).get(journal_entry)
    if record is not None:
        send_message.apply_async(args=[json.loads(record)])


def redrive_read(journal_entry: str) -> None:
    """Publish the mark-as-read task again for a journaled receipt (the sweeper's re-drive)."""
    record = read_journal(runtime.redis_client()).get(journal_entry)
    if record is not None:
        mark_as_read.apply_async(kwargs=json.loads(record))


def redrive_audit(call_id: str) -> None:
    """Put a stalled record back on the ready list, and see that a task will write it.

    The sweeper calls this once per stalled record: after a long database outage, thousands.
    One task writes them all, so one is published per KICK_EVERY_S, not one per record.
    """
    client = runtime.redis_client()
    client.rpush(READY_KEY, call_id)
    if client.set(KICK_KEY, 1, nx=True, ex=KICK_EVERY_S):
        publish_audit()


register(OUTBOUND_JOURNAL, outbound_journal, redrive_send, task="alfred.send_message")
register(AUDIT_JOURNAL, audit_journal, redrive_audit)
register(READ_JOURNAL, read_journal, redrive_read, task="alfred.mark_as_read")


def send_here(message: dict):
    """Send one stamped message in this process, once (the CLI's --now), and write its trail."""
    outcome = sender().send(message)
    # No worker may be running to write the audit batch: write it from here.
    write_pending(settings=runtime.settings(), client=runtime.redis_client())
    return outcome
