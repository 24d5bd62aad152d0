"""Rotate a tenant's token: exchange it, verify the new one with debug_token, swap it in.

Any failure keeps the old token in use: nothing is stored until the new token is verified.
The swap is one transaction (old retired, new active), so a send reads the old token or the
new one, never none. A run holds a per-tenant lock and marks each scheduled slot it
completes, so two beats (or a beat and a 190) never rotate one token twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from alfred import metrics
from alfred.config import Secret, Settings, Tenant
from alfred.db import session_scope
from alfred.tokens.store import active_row, current_token, swap_token
from alfred.tokens.suspect import clear_suspect
from alfred.whatsapp.errors import AccessTokenError, GraphError
from alfred.whatsapp.graph import GraphClient

log = logging.getLogger(__name__)

MESSAGING_SCOPE = "whatsapp_business_messaging"
LOCK_S = 120  # longer than two Graph calls with their timeouts
SLOT_TTL_S = 8 * 24 * 3600
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RotationRefused(Exception):
    """Rotation cannot start: the settings lack what the exchange needs (the message says)."""


class RotationFailed(Exception):
    """One tenant's rotation failed; `reason` names why, `retryable` whether to try again."""

    def __init__(self, reason: str, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.reason, self.retryable = reason, retryable


@dataclass(frozen=True)
class Rotated:
    """What became of one tenant's token: its new expiry, or why it was not rotated."""

    tenant_id: str
    outcome: str  # rotated | skipped | failed
    expires_at: datetime | None = None
    error: str | None = None
    reason: str | None = None
    retryable: bool = False


def check_settings(settings: Settings) -> tuple[str, Secret]:
    """Return the app id and secret the exchange needs, or say what is missing."""
    if not settings.meta_app_id:
        raise RotationRefused("set META_APP_ID (the Meta app's id) to exchange tokens")
    if not settings.app_secrets:
        raise RotationRefused("set META_APP_SECRET to exchange tokens")
    if not settings.tenants:
        raise RotationRefused("no tenants configured: set ALFRED_TENANTS")
    return settings.meta_app_id, settings.app_secrets[0]


def verify(data: dict) -> int:
    """Check debug_token's answer: valid, able to send messages; return expires_at (0: never)."""
    if data.get("is_valid") is not True:
        error = data.get("error") or {}
        raise RotationFailed(
            "token_invalid",
            f"debug_token says the new token is not valid: {error.get('message', 'no reason')}",
        )
    if MESSAGING_SCOPE not in (data.get("scopes") or []):
        raise RotationFailed(
            "missing_scope", f"the new token lacks the {MESSAGING_SCOPE} scope", retryable=False
        )
    expires_at = data.get("expires_at")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at < 0:
        raise RotationFailed("token_invalid", f"debug_token gave no expires_at: {expires_at!r}")
    return expires_at


def exchange(graph: GraphClient, app_id: str, secret: Secret, tokens: list[Secret]) -> Secret:
    """Exchange the first of `tokens` Meta accepts for a new long-lived one."""
    refused: GraphError | None = None
    for token in tokens:
        try:
            return graph.exchange_token(app_id, secret, token)[0]
        except AccessTokenError as exc:  # 190: this one is expired or revoked; try the next
            refused = exc
        except GraphError as exc:
            raise RotationFailed(exc.reason, f"exchange: {exc}", retryable=exc.retryable) from None
    raise RotationFailed("exchange_refused", f"Meta refused every token to exchange: {refused}")


class Rotator:
    """Rotates tenants' tokens, one at a time per tenant across every process."""

    def __init__(self, settings: Settings, client: redis.Redis, graph: GraphClient | None = None):
        self.app_id, self.secret = check_settings(settings)
        self.settings = settings
        self.client = client
        self.graph = graph or GraphClient(settings.graph_api_url, settings.graph_api_version)
        self._release = client.register_script(_RELEASE)

    def rotate(self, tenant: Tenant, *, slot: str | None = None) -> Rotated:
        """Rotate one tenant's token, unless its `slot` (a scheduled run) is done already."""
        tid = tenant.tenant_id
        done_key = f"alfred:tokens:rotated:{tid}:{slot}" if slot else None
        if done_key and self.client.exists(done_key):
            return Rotated(tid, "skipped", reason="already_rotated")
        lock, mine = f"alfred:tokens:rotating:{tid}", uuid.uuid4().hex
        if not self.client.set(lock, mine, nx=True, ex=LOCK_S):
            return Rotated(tid, "skipped", reason="rotation_in_progress")
        try:
            if done_key and self.client.exists(done_key):
                return Rotated(tid, "skipped", reason="already_rotated")
            try:
                expires_at = self._rotate(tenant)
            except RotationFailed as exc:
                metrics.TOKEN_ROTATIONS.labels(tid, "failed").inc()
                log.error(
                    "tokens.rotation_failed",
                    extra={"tenant_id": tid, "reason": exc.reason, "detail": str(exc)},
                )
                return Rotated(
                    tid, "failed", error=str(exc), reason=exc.reason, retryable=exc.retryable
                )
            if done_key:
                self.client.set(done_key, int(time.time()), ex=SLOT_TTL_S)
            metrics.TOKEN_ROTATIONS.labels(tid, "rotated").inc()
            metrics.TOKEN_EXPIRY.labels(tid).set(expires_at)
            when = datetime.fromtimestamp(expires_at, UTC) if expires_at else None
            log.warning("tokens.rotated", extra={"tenant_id": tid, "expires_at": expires_at})
            return Rotated(tid, "rotated", expires_at=when)
        finally:
            self._release(keys=[lock], args=[mine])

    def _rotate(self, tenant: Tenant) -> int:
        current = current_token(tenant, self.settings)
        # The configured token is the fallback: after Meta revoked the stored one, an operator
        # sets a fresh token in ALFRED_TENANTS (or it is still within its grace).
        tokens = [current] + ([tenant.token] if tenant.token and tenant.token != current else [])
        new = exchange(self.graph, self.app_id, self.secret, tokens)
        app_token = Secret(f"{self.app_id}|{self.secret.reveal()}")
        try:
            data = self.graph.debug_token(new, app_token)
        except GraphError as exc:
            raise RotationFailed(
                "debug_token_failed", f"debug_token: {exc}", retryable=exc.retryable
            ) from None
        expires_at = verify(data)
        now = datetime.now(UTC)
        swap_token(
            self.settings,
            tenant_id=tenant.tenant_id,
            token=new,
            expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else None,
            verified_at=now,
        )
        clear_suspect(self.client, tenant.tenant_id)
        return expires_at


def rotate_tokens(
    settings: Settings,
    client: redis.Redis,
    tenants: Iterable[Tenant] | None = None,
    *,
    slot: str | None = None,
) -> Iterator[Rotated]:
    """Rotate each tenant's token in turn; one tenant's failure never stops the others."""
    rotator = Rotator(settings, client)
    for tenant in list(settings.tenants.values() if tenants is None else tenants):
        yield rotator.rotate(tenant, slot=slot)


def stored_expiry(settings: Settings, tenant_id: str) -> datetime | None:
    """Return when the tenant's stored token expires (None: never, or none stored)."""
    with session_scope(settings.database_url) as session:
        row = active_row(session, tenant_id)
        return row.expires_at if row is not None else None
