"""X-Hub-Signature-256: HMAC-SHA256 of the raw request body, keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from alfred.config import Secret

PREFIX = "sha256="


def sign(body: bytes, secret: Secret | str) -> str:
    """Return the header value Meta would send for this body."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return PREFIX + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[Secret]) -> bool:
    """Check the header against every accepted secret, in constant time per secret.

    The HMAC covers the bytes exactly as received: whether Meta escaped non-ASCII
    characters as \\uXXXX or sent raw UTF-8, the signed bytes are the wire bytes.
    """
    if not header or not header.startswith(PREFIX):
        return False
    given = header[len(PREFIX) :].strip().lower()
    if len(given) != 64:
        return False
    matched = False
    for secret in secrets:
        # No early exit: the time taken does not reveal which secret matched.
        matched |= hmac.compare_digest(sign(body, secret)[len(PREFIX) :], given)
    return matched
