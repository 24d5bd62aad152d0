"""SQLAlchemy models: every row carries its tenant and its timestamps."""

from alfred.models.base import Base
from alfred.models.lifecycle import LifecycleArchive
from alfred.models.media import StoredMedia
from alfred.models.messages import Message, MessageStatus, SendAttempt
from alfred.models.quarantine import QuarantinedEvent
from alfred.models.tenants import CustomerWindow, TenantToken

__all__ = [
    "Base",
    "CustomerWindow",
    "LifecycleArchive",
    "Message",
    "MessageStatus",
    "QuarantinedEvent",
    "SendAttempt",
    "StoredMedia",
    "TenantToken",
]
