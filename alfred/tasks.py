"""The tasks Alfred's orchestrator calls: `from alfred.tasks import send_message`."""

from alfred.ingest.tasks import ingest_delivery
from alfred.journals.tasks import sweep_journals
from alfred.lifecycle.tasks import pii_lifecycle
from alfred.outbound.tasks import mark_as_read, send_message

__all__ = ["ingest_delivery", "mark_as_read", "pii_lifecycle", "send_message", "sweep_journals"]
