"""Exchange each tenant's token for a new long-lived one and store it encrypted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alfred.config import Settings, Tenant
from alfred.db import session_scope
from alfred.tokens.store import current_token, save_token
from alfred.whatsapp.graph import GraphClient


class RotationRefused(Exception):
    """Rotation cannot start: the settings lack what the exchange needs (the message says)."""


@dataclass(frozen=True)
class Rotated:
    """What became of one tenant's token: its new expiry, or why it was not rotated."""

    tenant_id: str
    expires_at: datetime | None = None
    error: str | None = None


def rotate_tokens(settings: Settings, tenants: Iterable[Tenant]) -> Iterator[Rotated]:
    """Rotate each tenant's token in turn, yielding each result as it comes."""
    app_id = settings.meta_app_id
    if not app_id:
        raise RotationRefused("set META_APP_ID (the Meta app's id) to exchange tokens")
    if not settings.app_secrets:
        raise RotationRefused("set META_APP_SECRET to exchange tokens")
    tenants = list(tenants)
    if not tenants:
        raise RotationRefused("no tenants configured: set ALFRED_TENANTS")
    graph = GraphClient(settings.graph_api_url, settings.graph_api_version)
    for tenant in tenants:
        # One tenant's failure must not keep the others on a token about to expire.
        try:
            token, lifetime = graph.exchange_token(
                app_id, settings.app_secrets[0], current_token(tenant, settings)
            )
            expires = datetime.now(UTC) + timedelta(seconds=lifetime) if lifetime else None
            with session_scope(settings.database_url) as session:
                save_token(session, settings, tenant_id=tenant.tenant_id, token=token,
                           expires_at=expires)  # fmt: skip
        except Exception as exc:
            yield Rotated(tenant.tenant_id, error=f"{type(exc).__name__}: {exc}")
            continue
        yield Rotated(tenant.tenant_id, expires_at=expires)
