"""Find the token a tenant sends with now, and keep rotated tokens encrypted in the database."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

from cryptography.fernet import Fernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alfred.config import VAR_DIR, Secret, Settings, Tenant
from alfred.db import session_scope
from alfred.models import TenantToken

# A rotated token reaches every worker within this many seconds, without a restart.
CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str], tuple[float, Secret]] = {}
_lock = threading.Lock()


def cipher(settings: Settings) -> Fernet:
    """Return the Fernet cipher keyed by ALFRED_ENCRYPTION_KEY (a dev key file when unset)."""
    if settings.encryption_key:
        return Fernet(settings.encryption_key.reveal().encode())
    key_file = VAR_DIR / "encryption.key"
    if not key_file.exists():
        # Development only: production sets ALFRED_ENCRYPTION_KEY as a Fly secret.
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
    return Fernet(key_file.read_bytes().strip())


def save_token(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    token: Secret,
    expires_at: datetime | None,
    source: str = "rotation",
) -> None:
    """Store a new token encrypted and make it the one in use."""
    session.execute(
        update(TenantToken).where(TenantToken.tenant_id == tenant_id).values(active=False)
    )
    session.add(
        TenantToken(
            tenant_id=tenant_id,
            token_encrypted=cipher(settings).encrypt(token.reveal().encode()),
            expires_at=expires_at,
            active=True,
            source=source,
        )
    )
    forget(tenant_id)


def current_token(tenant: Tenant, settings: Settings) -> Secret:
    """Return the newest active rotated token, else the one from ALFRED_TENANTS."""
    slot = (settings.database_url, tenant.tenant_id)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(slot)
    if cached and cached[0] > now:
        return cached[1]
    with session_scope(settings.database_url) as session:
        row = session.scalar(
            select(TenantToken)
            .where(TenantToken.tenant_id == tenant.tenant_id, TenantToken.active.is_(True))
            .order_by(TenantToken.id.desc())
            .limit(1)
        )
        encrypted = row.token_encrypted if row is not None else None
    token = Secret(cipher(settings).decrypt(encrypted).decode()) if encrypted else tenant.token
    with _lock:
        _cache[slot] = (now + CACHE_SECONDS, token)
    return token


def forget(tenant_id: str | None = None) -> None:
    """Drop cached tokens (after a rotation or a 190), so the next send reads the store."""
    with _lock:
        for slot in [s for s in _cache if tenant_id is None or s[1] == tenant_id]:
            _cache.pop(slot, None)
