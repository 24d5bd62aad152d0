"""`python -m alfred doctor`: each tenant's Meta setup and the services, one line per check.

The most common reason a bridge hears nothing is not in the bridge: the app is not subscribed
to the WABA, the callback URL is wrong, the number is not registered, or the token lacks a
scope (chatwoot#13219, #5290). Each check says what it found and, when wrong, what to do.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests

from alfred.config import OLDEST_SUPPORTED_GRAPH_API_VERSION, Secret, Settings, parse_version
from alfred.whatsapp.errors import GraphError

NEEDED_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")
TOKEN_WARN_S = 7 * 86400
BEAT_SILENT_S = 120.0
HEARTBEATS_KEY = "alfred:heartbeats"
RUNBOOK = "docs/runbook.md"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, for whom, whether it is fine, and what was seen."""

    scope: str  # a tenant id, or "services"
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        """Format the check as doctor prints it."""
        mark = "ok  " if self.ok and not self.warning else "WARN" if self.ok else "FAIL"
        return f"{mark}  {self.scope:<9} {self.name:<13} {self.detail}"


def _guard(scope: str, name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except GraphError as exc:
        return Check(scope, name, False, f"Meta refused: {exc}")
    except Exception as exc:
        return Check(scope, name, False, f"{type(exc).__name__}: {exc}")


def tenant_checks(
    settings: Settings, graph, tenant, *, app_id: str | None, app_secret
) -> Iterator[Check]:
    """Check one tenant: subscription, number, token; each independent of the others."""
    tid = tenant.tenant_id

    def subscription() -> Check:
        if not tenant.waba_id:
            return Check(tid, "subscription", False, "no waba_id configured in ALFRED_TENANTS")
        apps = graph.subscribed_apps(tenant.waba_id, tenant.token)
        ids = [(a.get("whatsapp_business_api_data") or {}).get("id") for a in apps]
        if not apps:
            return Check(
                tid,
                "subscription",
                False,
                f"no app is subscribed to WABA {tenant.waba_id}: Meta sends it no webhooks; "
                f"POST /{tenant.waba_id}/subscribed_apps ({RUNBOOK}#no-webhook-deliveries)",
            )
        if app_id and app_id not in ids:
            return Check(
                tid,
                "subscription",
                False,
                f"WABA {tenant.waba_id} is subscribed to app(s) {', '.join(map(str, ids))}, not "
                f"META_APP_ID {app_id} ({RUNBOOK}#no-webhook-deliveries)",
            )
        return Check(
            tid,
            "subscription",
            True,
            f"app {', '.join(map(str, ids))} subscribed to WABA {tenant.waba_id}",
        )

    def number() -> Check:
        phone = graph.get_node(
            tenant.phone_number_id,
            tenant.token,
            (
                "status",
                "code_verification_status",
                "quality_rating",
                "messaging_limit_tier",
                "display_phone_number",
            ),
        )
        status = phone.get("status")
        seen = (
            f"{phone.get('display_phone_number', tenant.phone_number_id)}: status {status}, "
            f"quality {phone.get('quality_rating')}, tier {phone.get('messaging_limit_tier')}"
        )
        if status != "CONNECTED":
            return Check(
                tid,
                "number",
                False,
                f"{seen}: not registered for the Cloud API "
                f"(POST /{tenant.phone_number_id}/register)",
            )
        return Check(
            tid, "number", True, seen, warning=phone.get("quality_rating") in ("YELLOW", "RED")
        )

    def token() -> Check:
        caller = (
            Secret(f"{app_id}|{app_secret.reveal()}") if app_id and app_secret else tenant.token
        )
        data = graph.debug_token(tenant.token, caller)
        if not data.get("is_valid"):
            why = (data.get("error") or {}).get("message", "is_valid is false")
            return Check(tid, "token", False, f"invalid: {why} ({RUNBOOK}#invalid-token)")
        missing = [s for s in NEEDED_SCOPES if s not in (data.get("scopes") or [])]
        if missing:
            return Check(
                tid, "token", False, f"lacks scope {', '.join(missing)} ({RUNBOOK}#invalid-token)"
            )
        expires_at = int(data.get("expires_at") or 0)
        if not expires_at:
            return Check(tid, "token", True, "valid, scopes ok, never expires")
        left = expires_at - time.time()
        detail = f"valid, scopes ok, expires in {left / 86400:.1f} days"
        return Check(tid, "token", left > 0, detail, warning=left < TOKEN_WARN_S)

    for name, run in (("subscription", subscription), ("number", number), ("token", token)):
        yield _guard(tid, name, run)


def service_checks(settings: Settings, redis_client, *, webhook_url: str | None) -> Iterator[Check]:
    """Check the services: Graph version, our webhook, Redis, database, blobs, beat, PagerDuty."""
    version = settings.graph_api_version

    def graph_version() -> Check:
        ok = parse_version(version) >= parse_version(OLDEST_SUPPORTED_GRAPH_API_VERSION)
        return Check(
            "services",
            "graph version",
            ok,
            f"{version} (Meta serves {OLDEST_SUPPORTED_GRAPH_API_VERSION} and newer)",
        )

    def handshake() -> Check:
        url = webhook_url or f"http://127.0.0.1:{settings.port}/webhook"
        if settings.verify_token is None:
            return Check(
                "services",
                "webhook",
                False,
                "META_VERIFY_TOKEN is not set: Meta's handshake is refused",
            )
        challenge = secrets.token_hex(8)
        answer = requests.get(
            url,
            timeout=10,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": settings.verify_token.reveal(),
                "hub.challenge": challenge,
            },
        )
        if answer.status_code != 200 or answer.text != challenge:
            return Check(
                "services",
                "webhook",
                False,
                f"GET {url} answered {answer.status_code}, not the challenge: Meta cannot "
                f"verify this callback URL ({RUNBOOK}#no-webhook-deliveries)",
            )
        return Check("services", "webhook", True, f"{url} answers Meta's handshake")

    def redis_ok() -> Check:
        redis_client.ping()
        return Check("services", "redis", True, "answers PING")

    def database() -> Check:
        from sqlalchemy import text

        from alfred.db import get_engine

        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        return Check("services", "database", True, "answers SELECT 1")

    def blob_store() -> Check:
        try:
            from alfred.blobstore import store_for
        except ImportError:
            return Check("services", "blob store", True, "none in this build", warning=True)
        store = store_for(settings)
        key = f"doctor/{secrets.token_hex(6)}"
        store.put_bytes(key, b"doctor")
        found = store.get_bytes(key) == b"doctor"
        store.delete(key)
        return Check(
            "services", "blob store", found, f"{settings.blob_store_url} writable and readable"
        )

    def beat() -> Check:
        raw = redis_client.hget(HEARTBEATS_KEY, "beat")
        if raw is None:
            return Check(
                "services",
                "beat",
                False,
                "beat has never run: scheduled jobs (sweeps, alerts, rotation) do not happen",
            )
        age = time.time() - float(raw)
        return Check("services", "beat", age < BEAT_SILENT_S, f"last seen {age:.0f} s ago")

    def pagerduty() -> Check:
        if not settings.ops.pagerduty_routing_key:
            return Check(
                "services",
                "pagerduty",
                False,
                "PAGERDUTY_ROUTING_KEY is not set: alerts go nowhere",
            )
        return Check(
            "services",
            "pagerduty",
            True,
            f"routing key set; events to {settings.ops.pagerduty_events_url}",
        )

    for name, run in (
        ("graph version", graph_version),
        ("webhook", handshake),
        ("redis", redis_ok),
        ("database", database),
        ("blob store", blob_store),
        ("beat", beat),
        ("pagerduty", pagerduty),
    ):
        yield _guard("services", name, run)


def run(settings: Settings, graph, redis_client, *, app_id, app_secret, webhook_url) -> list[Check]:
    """Run every check; tenants first, then the services."""
    checks: list[Check] = []
    if not settings.tenants:
        checks.append(Check("tenants", "config", False, "no tenant configured: set ALFRED_TENANTS"))
    for tenant in settings.tenants.values():
        checks.extend(tenant_checks(settings, graph, tenant, app_id=app_id, app_secret=app_secret))
    checks.extend(service_checks(settings, redis_client, webhook_url=webhook_url))
    return checks
