"""X-Hub-Signature-256: HMAC-SHA256 of the raw request body, keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from alfred.config import Secret

PREFIX = "sha256="
_HEX_DIGITS = frozenset(b"0123456789abcdef")


def sign(body: bytes, secret: Secret | str) -> str:
    """Return the header value Meta would send for this body."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return PREFIX + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[Secret]) -> bool:
    """Check the header against every accepted secret, in constant time per secret.

    The HMAC covers the bytes exactly as received: whether Meta escaped non-ASCII
    characters as \\uXXXX or sent raw UTF-8, the signed bytes are the wire bytes.
    Digests are compared as bytes: a header holding any non-hex character (non-ASCII
    included, which WSGI hands over as latin-1) is simply a wrong signature.
    """
    if not header or not header.startswith(PREFIX):
        return False
    given = header[len(PREFIX) :].strip().lower().encode("latin-1", "replace")
    if len(given) != 64 or not _HEX_DIGITS.issuperset(given):
        return False
    matched = False
    for secret in secrets:
        expected = sign(body, secret)[len(PREFIX) :].encode("ascii")
        # No early exit: the time taken does not reveal which secret matched.
        matched |= hmac.compare_digest(expected, given)
    return matched
