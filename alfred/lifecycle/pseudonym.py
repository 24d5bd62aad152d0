"""Keyed pseudonyms for phone numbers and user ids: the same person, the same value."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from alfred.config import VAR_DIR, Settings

PREFIX = "h:"
# 24 hex digits (96 bits) keep the pseudonym within the 32 characters of messages.wa_id.
DIGEST_CHARS = 24
DEV_KEY_FILE = "pii-hash.key"


def hash_key(settings: Settings) -> bytes:
    """Return the HMAC key: PII_HASH_KEY, or (SQLite only) a development key file."""
    if settings.pii_hash_key:
        return settings.pii_hash_key.reveal().encode()
    # Config refuses a server database without PII_HASH_KEY, so this is a developer's machine.
    path = VAR_DIR / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def pseudonym(key: bytes, value: object) -> str | None:
    """Map a phone number or user id to its keyed hash: the same person, the same value."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.startswith(PREFIX):
        return text
    digest = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGEST_CHARS]
