"""Settings read from the environment (12-factor, as Fly secrets set them)."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alfred.redis_url import is_sentinel, parse_sentinel_url

REPO_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ALFRED_VAR_DIR", REPO_ROOT / "var"))

# v25.0 is available until July 2028 (FACTS F10); v18.0, the seed's, expired in January 2026.
DEFAULT_GRAPH_API_VERSION = "v25.0"
OLDEST_SUPPORTED_GRAPH_API_VERSION = "v23.0"
DEFAULT_MPS = 80
MAX_MPS = 1000
# Business-initiated conversations a tenant may open in 24 h before Meta's tier stops it.
DEFAULT_TIER_LIMIT = 1000
# Personal data stays this many days in the hot stores, then this many in cold archives.
DEFAULT_PII_HOT_DAYS, DEFAULT_PII_COLD_DAYS = 30, 90
# «alfred-ingest» keeps the hot window (the lifecycle trims by age); this caps it meanwhile.
DEFAULT_STREAM_MAXLEN = 1_000_000
# Work journaled and not yet done, per journal, before new work is refused: at a few KB a
# delivery or message, about 100-200 MB of Redis each; at the seed's 50/s, 17 minutes of a
# stopped worker.
DEFAULT_MAX_BACKLOG = 50_000


class ConfigError(ValueError):
    """The environment describes an impossible configuration."""


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it leaves the process (HTTP, HMAC)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def _positive(env: Mapping[str, str], name: str, default: str) -> float:
    text = env.get(name, default)
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{name}={text!r}: expected a number of seconds above 0")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Tenant:
    """One WhatsApp business number and the credentials that speak for it."""

    tenant_id: str
    phone_number_id: str
    waba_id: str | None
    token: Secret = field(repr=False)
    mps: int = DEFAULT_MPS


def parse_version(version: str) -> tuple[int, int]:
    """Turn 'v25.0' into (25, 0) so versions compare as numbers."""
    text = version.strip().lstrip("v")
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError as exc:
        raise ConfigError(f"GRAPH_API_VERSION {version!r} is not of the form v25.0") from exc


def normalise_database_url(url: str) -> str:
    """Accept the postgres:// form Fly and Supabase hand out, and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _parse_tenants(environ: Mapping[str, str]) -> dict[str, Tenant]:
    raw = environ.get("ALFRED_TENANTS")
    if not raw:
        phone_id = environ.get("META_PHONE_ID")
        if not phone_id:
            return {}
        return {
            "home": Tenant(
                tenant_id="home",
                phone_number_id=phone_id,
                waba_id=environ.get("META_WABA_ID"),
                token=Secret(environ.get("META_TOKEN", "")),
            )
        }
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(
            f"ALFRED_TENANTS is not valid JSON ({exc}): set it to a JSON object such as "
            '{"home": {"phone_number_id": "…", "waba_id": "…", "token": "…"}}'
        ) from exc
    if not isinstance(spec, dict):
        raise ConfigError("ALFRED_TENANTS must be a JSON object keyed by tenant id")
    tenants: dict[str, Tenant] = {}
    seen_numbers: dict[str, str] = {}
    for tenant_id, item in spec.items():
        if not isinstance(item, dict) or not item.get("phone_number_id"):
            raise ConfigError(f"tenant {tenant_id!r} needs a phone_number_id")
        mps = int(item.get("mps", DEFAULT_MPS))
        if not 1 <= mps <= MAX_MPS:
            raise ConfigError(f"tenant {tenant_id!r}: mps must be between 1 and {MAX_MPS}")
        phone_number_id = str(item["phone_number_id"])
        if phone_number_id in seen_numbers:
            raise ConfigError(
                f"tenants {seen_numbers[phone_number_id]!r} and {tenant_id!r} "
                "share a phone_number_id"
            )
        seen_numbers[phone_number_id] = tenant_id
        tenants[tenant_id] = Tenant(
            tenant_id=tenant_id,
            phone_number_id=phone_number_id,
            waba_id=str(item["waba_id"]) if item.get("waba_id") else None,
            token=Secret(str(item.get("token", ""))),
            mps=mps,
        )
    return tenants


def _int(environ: Mapping[str, str], name: str, default: int, *, least: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < least:
        raise ConfigError(f"{name} must be at least {least}, not {value}")
    return value


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """Return LOG_LEVEL (default INFO), read apart: logging is set up before the settings."""
    env = os.environ if environ is None else environ
    return env.get("LOG_LEVEL", "INFO").upper()


def _secret_or_none(environ: Mapping[str, str], name: str) -> Secret | None:
    value = environ.get(name)
    return Secret(value) if value else None


@dataclass(frozen=True)
class OpsSettings:
    """Metrics, alerting and Flower: what the operations side reads (docs/operations.md)."""

    metrics_port: int = 9091
    # Loopback by default; fly.toml binds the private network (no [service] exposes it).
    metrics_addr: str = "127.0.0.1"
    # The `instance` label of the dashboard and the source of PagerDuty events.
    instance: str = "alfred-home"
    pagerduty_routing_key: Secret | None = field(default=None, repr=False)
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    alert_window_s: float = 300.0
    alert_send_failure_ratio: float = 0.10
    runbook_url: str = "docs/runbook.md"
    # The in-app notifier, for one machine; off where Prometheus + Alertmanager page instead.
    alert_notifier: bool = True
    alert_every_s: float = 30.0
    # A process whose heartbeat (every 5 s) is older than this is down.
    heartbeat_stale_s: float = 60.0
    flower_basic_auth: Secret | None = field(default=None, repr=False)
    flower_port: int = 5555

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpsSettings:
        """Read the operations settings, failing loudly on nonsense."""
        ratio = _positive(env, "ALERT_SEND_FAILURE_RATIO", "0.10")
        if ratio > 1:
            raise ConfigError("ALERT_SEND_FAILURE_RATIO is a share: between 0 and 1")
        auth = env.get("FLOWER_BASIC_AUTH")
        if (
            auth is not None
            and auth
            and not all(
                user and password
                for user, _, password in (pair.partition(":") for pair in auth.split(","))
            )
        ):
            raise ConfigError("FLOWER_BASIC_AUTH must be user:password[,user:password]")
        return cls(
            metrics_port=int(env.get("METRICS_PORT", "9091")),
            metrics_addr=env.get("METRICS_ADDR", "127.0.0.1"),
            instance=env.get("ALFRED_INSTANCE", "alfred-home"),
            pagerduty_routing_key=_secret_or_none(env, "PAGERDUTY_ROUTING_KEY"),
            pagerduty_events_url=env.get(
                "PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
            ),
            alert_window_s=_positive(env, "ALERT_WINDOW_S", "300"),
            alert_send_failure_ratio=ratio,
            runbook_url=env.get("ALFRED_RUNBOOK_URL", "docs/runbook.md"),
            alert_notifier=env.get("ALERT_NOTIFIER", "on").lower() not in ("off", "0", "false"),
            alert_every_s=_positive(env, "ALERT_EVALUATE_EVERY_S", "30"),
            heartbeat_stale_s=_positive(env, "ALERT_HEARTBEAT_STALE_S", "60"),
            flower_basic_auth=_secret_or_none(env, "FLOWER_BASIC_AUTH"),
            flower_port=int(env.get("FLOWER_PORT", "5555")),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the bridge reads from its environment, parsed once."""

    redis_url: str
    database_url: str
    app_secrets: tuple[Secret, ...] = field(repr=False)
    verify_token: Secret | None = field(repr=False)
    graph_api_url: str
    graph_api_version: str
    tenants: dict[str, Tenant]
    port: int
    webhook_max_skew_s: float
    encryption_key: Secret | None = field(repr=False)
    simulator_url: str | None
    meta_app_id: str | None = None
    tier_limit: int = DEFAULT_TIER_LIMIT
    # "delivered": a long reply's next part waits until the previous one was delivered.
    chunk_order: str = "accepted"
    pii_hot_days: int = DEFAULT_PII_HOT_DAYS
    pii_cold_days: int = DEFAULT_PII_COLD_DAYS
    # Where media and cold archives go (alfred/blobstore.py).
    blob_store_url: str = ""
    s3_endpoint_url: str | None = None
    # A webhook body not received whole within this many seconds gets 408 (docs/inbound.md).
    webhook_body_timeout_s: float = 10.0
    # What becomes of a late event that is new: "quarantine" (replayable) or "deliver".
    webhook_stale_policy: str = "quarantine"
    # The HMAC key that turns phone numbers and user ids into stable pseudonyms.
    pii_hash_key: Secret | None = field(default=None, repr=False)
    stream_maxlen: int = DEFAULT_STREAM_MAXLEN
    # Back-pressure: past this many deliveries (or messages) journaled and not yet done, the
    # webhook answers 503 (Meta retries for 7 days) and send_message refuses new messages, so
    # a burst or a stopped worker never grows Redis without bound (docs/reliability.md).
    ingest_max_backlog: int = DEFAULT_MAX_BACKLOG
    outbound_max_backlog: int = DEFAULT_MAX_BACKLOG
    # The webhook's acknowledgement waits for this many replicas to hold the delivery (Redis
    # WAIT), at most this long, else 503 (docs/reliability.md, Redis Sentinel). 0: no wait.
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    ops: OpsSettings = field(default_factory=lambda: OpsSettings.from_env({}))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment, failing loudly on nonsense."""
        env = os.environ if environ is None else environ
        version = env.get("GRAPH_API_VERSION", DEFAULT_GRAPH_API_VERSION)
        if parse_version(version) < parse_version(OLDEST_SUPPORTED_GRAPH_API_VERSION):
            raise ConfigError(
                f"GRAPH_API_VERSION {version} is no longer served by Meta; "
                f"use {OLDEST_SUPPORTED_GRAPH_API_VERSION} or newer"
            )
        secrets = tuple(
            s
            for s in (
                _secret_or_none(env, "META_APP_SECRET"),
                # Accepted too while a rotation of the app secret is under way.
                _secret_or_none(env, "META_APP_SECRET_PREVIOUS"),
            )
            if s is not None
        )
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        database_url = normalise_database_url(
            env.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'alfred.db'}")
        )
        pii_hash_key = _secret_or_none(env, "PII_HASH_KEY")
        if pii_hash_key is None and not database_url.startswith("sqlite"):
            # A dev key file would give each machine its own pseudonyms: joins would break.
            raise ConfigError("PII_HASH_KEY is required with a server database (docs/privacy.md)")
        if pii_hash_key is not None and len(pii_hash_key.reveal()) < 32:
            raise ConfigError("PII_HASH_KEY must be at least 32 characters")
        redis_url = env.get("REDIS_URL", "redis://localhost:6379/0")
        if is_sentinel(redis_url):
            try:
                parse_sentinel_url(redis_url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cls(
            redis_url=redis_url,
            database_url=database_url,
            app_secrets=secrets,
            verify_token=_secret_or_none(env, "META_VERIFY_TOKEN"),
            graph_api_url=env.get("GRAPH_API_URL", "https://graph.facebook.com").rstrip("/"),
            graph_api_version=version if version.startswith("v") else f"v{version}",
            tenants=_parse_tenants(env),
            port=int(env.get("PORT", "8080")),
            webhook_max_skew_s=float(env.get("WEBHOOK_MAX_SKEW_S", "10")),
            encryption_key=_secret_or_none(env, "ALFRED_ENCRYPTION_KEY"),
            simulator_url=env.get("ALFRED_SIMULATOR_URL"),
            meta_app_id=env.get("META_APP_ID") or None,
            tier_limit=_int(env, "ALFRED_TIER_LIMIT", DEFAULT_TIER_LIMIT, least=0),
            chunk_order=env.get("ALFRED_CHUNK_ORDER", "accepted"),
            pii_hot_days=_int(env, "PII_HOT_DAYS", DEFAULT_PII_HOT_DAYS, least=1),
            pii_cold_days=_int(env, "PII_COLD_DAYS", DEFAULT_PII_COLD_DAYS, least=0),
            blob_store_url=env.get("BLOB_STORE_URL")
            or (Path(env.get("ALFRED_VAR_DIR", VAR_DIR)).resolve() / "blobs").as_uri(),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            webhook_body_timeout_s=_positive(env, "WEBHOOK_BODY_TIMEOUT_S", "10"),
            webhook_stale_policy=_choice(
                env, "WEBHOOK_STALE_POLICY", "quarantine", ("quarantine", "deliver")
            ),
            pii_hash_key=pii_hash_key,
            stream_maxlen=_int(env, "STREAM_MAXLEN", DEFAULT_STREAM_MAXLEN, least=1),
            ingest_max_backlog=_int(env, "WEBHOOK_MAX_BACKLOG", DEFAULT_MAX_BACKLOG, least=1),
            outbound_max_backlog=_int(env, "OUTBOUND_MAX_BACKLOG", DEFAULT_MAX_BACKLOG, least=1),
            redis_wait_replicas=_int(env, "REDIS_WAIT_REPLICAS", 0, least=0),
            # WAIT's timeout 0 would block for ever: the least is 1 ms.
            redis_wait_timeout_ms=_int(env, "REDIS_WAIT_TIMEOUT_MS", 100, least=1),
            ops=OpsSettings.from_env(env),
        )

    def tenant_by_phone_number_id(self, phone_number_id: str | None) -> Tenant | None:
        """Find the tenant that owns a business phone number id."""
        if not phone_number_id:
            return None
        for tenant in self.tenants.values():
            if tenant.phone_number_id == str(phone_number_id):
                return tenant
        return None

    def tenant_by_waba_id(self, waba_id: str | None) -> Tenant | None:
        """Find the tenant that owns a WhatsApp Business Account id."""
        if not waba_id:
            return None
        for tenant in self.tenants.values():
            if tenant.waba_id == str(waba_id):
                return tenant
        return None
