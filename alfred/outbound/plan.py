"""What one send works from (its plan) and what becomes of it (its outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field

from alfred.config import Tenant
from alfred.outbound.hold import Hold


@dataclass
class SendOutcome:
    """What became of one send_message run."""

    status: str  # sent | duplicate | retry | failed | dead_lettered | invalid
    retry_in: float = 0.0
    reason: str | None = None
    wamids: list[str] = field(default_factory=list)
    attempts_made: int | None = None  # set when a call failed: the retry carries the count


@dataclass
class Plan:
    """A validated message and what its send needs: its parts, keys, hold and pacing slot."""

    tenant: Tenant
    message: dict
    parts: list[tuple[str, dict]]
    names: list[str]  # every name the recipient's window may be stored under
    recipient: str  # the pacing key: phone number first, else BSUID
    windows: list[str]  # the window's Redis keys; none when no window is needed
    slot: tuple[list[str], list]  # SendLimiter.slot's keys and arguments
    hold: Hold
