"""Find the token a tenant sends with now, and keep rotated tokens encrypted in the database."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alfred.config import VAR_DIR, ConfigError, Secret, Settings, Tenant
from alfred.db import DATABASE_ERRORS, session_scope
from alfred.models import TenantToken

# A rotated token reaches every worker within this many seconds, without a restart; the old
# token keeps working meanwhile (Meta leaves an exchanged-away token valid).
log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str], tuple[float, Secret]] = {}
_lock = threading.Lock()


class TokenKeyError(ConfigError):
    """The encryption keys cannot read a stored token (a key was dropped too early)."""


def is_server_database(database_url: str) -> bool:
    """Tell a database other machines share (PostgreSQL) from a local SQLite file."""
    return not database_url.startswith("sqlite")


def cipher(settings: Settings) -> MultiFernet:
    """Return the keys of ALFRED_ENCRYPTION_KEY, newest first (a dev key file with SQLite only)."""
    if settings.encryption_key:
        keys = [k.strip() for k in settings.encryption_key.reveal().split(",") if k.strip()]
        try:
            return MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError:
            raise ConfigError(
                "ALFRED_ENCRYPTION_KEY must be Fernet keys (Fernet.generate_key()), comma-separated"
            ) from None
    if is_server_database(settings.database_url):
        # Each machine would make its own key, and none could read another's tokens.
        raise ConfigError(
            "ALFRED_ENCRYPTION_KEY is not set: a server database needs one key shared by every "
            "machine (docs/tokens.md)"
        )
    key_file = VAR_DIR / "encryption.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this machine made it first
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    return MultiFernet([Fernet(key_file.read_bytes().strip())])


def check_key(settings: Settings) -> None:
    """Refuse to start without the keys a rotated token needs (called by every process)."""
    cipher(settings)


def swap_token(
    settings: Settings,
    *,
    tenant_id: str,
    token: Secret,
    expires_at: datetime | None,
    verified_at: datetime | None = None,
    source: str = "rotation",
) -> None:
    """Store a new token encrypted and make it the one in use, in one transaction."""
    with session_scope(settings.database_url) as session:
        save_token(
            session,
            settings,
            tenant_id=tenant_id,
            token=token,
            expires_at=expires_at,
            verified_at=verified_at,
            source=source,
        )
    # Only after the commit: a send that re-read the store before it would cache the old one.
    forget(tenant_id)


def save_token(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    token: Secret,
    expires_at: datetime | None,
    verified_at: datetime | None = None,
    source: str = "rotation",
) -> None:
    """Add a new active token to the session, retiring the old; the caller commits."""
    session.execute(
        update(TenantToken).where(TenantToken.tenant_id == tenant_id).values(active=False)
    )
    session.add(
        TenantToken(
            tenant_id=tenant_id,
            token_encrypted=cipher(settings).encrypt(token.reveal().encode()),
            expires_at=expires_at,
            verified_at=verified_at,
            active=True,
            source=source,
        )
    )


def active_row(session: Session, tenant_id: str) -> TenantToken | None:
    """Return the tenant's token row in use, if a rotation stored one."""
    return session.scalar(
        select(TenantToken)
        .where(TenantToken.tenant_id == tenant_id, TenantToken.active.is_(True))
        .order_by(TenantToken.id.desc())
        .limit(1)
    )


def current_token(tenant: Tenant, settings: Settings) -> Secret:
    """Return the newest active rotated token, else the one from ALFRED_TENANTS."""
    slot = (settings.database_url, tenant.tenant_id)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(slot)
    if cached and cached[0] > now:
        return cached[1]
    try:
        with session_scope(settings.database_url) as session:
            row = active_row(session, tenant.tenant_id)
            encrypted = row.token_encrypted if row is not None else None
    except DATABASE_ERRORS:
        if cached is None:
            raise
        # The database is down: the token last read is still the one in use (a rotation in
        # this process forgets it; other processes re-read within CACHE_SECONDS of one). Sends
        # go on through an outage instead of stopping when the cache ages out.
        log.warning("token.store_unreachable", extra={"tenant_id": tenant.tenant_id})
        return cached[1]
    token = _decrypt(settings, encrypted) if encrypted else tenant.token
    with _lock:
        _cache[slot] = (now + CACHE_SECONDS, token)
    return token


def _decrypt(settings: Settings, encrypted: bytes) -> Secret:
    try:
        return Secret(cipher(settings).decrypt(encrypted).decode())
    except InvalidToken:
        raise TokenKeyError(
            "no key of ALFRED_ENCRYPTION_KEY decrypts the stored token: keep the old key "
            "(after the new one) until `python -m alfred rotate-key` has run"
        ) from None


def reencrypt_all(settings: Settings) -> int:
    """Re-encrypt every stored token with the newest key; return how many."""
    keys = cipher(settings)
    count = 0
    with session_scope(settings.database_url) as session:
        for row in session.scalars(select(TenantToken)):
            try:
                row.token_encrypted = keys.rotate(row.token_encrypted)
            except InvalidToken:
                raise TokenKeyError(
                    f"token {row.id} of {row.tenant_id!r} is readable by none of the keys"
                ) from None
            count += 1
    forget()
    return count


def forget(tenant_id: str | None = None) -> None:
    """Drop cached tokens (after a rotation or a 190), so the next send reads the store."""
    with _lock:
        for slot in [s for s in _cache if tenant_id is None or s[1] == tenant_id]:
            _cache.pop(slot, None)
