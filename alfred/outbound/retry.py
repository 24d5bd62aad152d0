"""When to try a send again: Meta's back-off, and short waits slept inside the task."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from alfred.whatsapp.errors import GraphError

T = TypeVar("T")

BACKOFF_CAP_S = 300.0
# Waits shorter than this are slept inside the task instead of a round trip through the broker.
INLINE_WAIT_S = 0.5


def backoff(attempt: int, floor: float | None = None) -> float:
    """Return Meta's 4^X back-off with jitter, capped, never below the error's own floor."""
    ceiling = min(BACKOFF_CAP_S, 4.0 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, floor or 0.0)


def within_inline_wait(attempt: Callable[[], tuple[float, T]]) -> tuple[float, T]:
    """Call `attempt` until it needs no wait, sleeping its short waits; return the last answer.

    `attempt` returns (0, result) once it got what it asked for, else (how long to wait,
    result). Waits that end within INLINE_WAIT_S are slept here; a longer one is returned,
    for a Celery retry.
    """
    deadline = time.monotonic() + INLINE_WAIT_S
    while True:  # bounded by the deadline
        wait, result = attempt()
        if not wait or time.monotonic() + wait > deadline:
            return wait, result
        time.sleep(wait)


def retry_in(exc: GraphError, attempt: int) -> float:
    """Return how long to wait before calling again after `exc` (at least 5 s if in doubt)."""
    if exc.may_have_been_delivered:
        return max(backoff(attempt, exc.min_retry_delay_s), 5.0)
    return backoff(attempt, exc.min_retry_delay_s)
