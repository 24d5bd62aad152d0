"""The simulator's settings: the bridge's own environment plus SIMULATOR_* knobs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from alfred.config import Secret, Settings, Tenant
from alfred.simulator.faults import FaultConfig

DEFAULT_APP_SECRET = "simulator-app-secret"  # noqa: S105 - local stand-in only


@dataclass
class SimulatorConfig:
    """Everything that shapes one simulated Cloud API."""

    tenants: dict[str, Tenant]
    webhook_url: str | None
    app_secret: str
    verify_token: str | None = None
    app_id: str = "1234567890"
    status_flow: tuple[str, ...] = ("sent", "delivered", "read")
    status_delay_s: float = 0.05
    batch_statuses: bool = True
    max_batch: int = 50  # statuses per webhook POST when batching
    enforce_window: bool = True
    window_s: float = 24 * 3600.0
    pair_interval_s: float = 6.0
    pair_burst: int = 45
    webhook_retry_schedule: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
    webhook_timeout_s: float = 10.0
    webhook_concurrency: int = 32  # connection limit of the one callback ClientSession
    webhook_ascii: bool = False  # True: escape non-ASCII as \uXXXX in callback bodies
    undeliverable: frozenset[str] = frozenset()  # wa_ids (digits) "not on WhatsApp" -> 131026
    template_approval_delay_s: float = 0.2
    token_grace_s: float = 3600.0  # how long an exchanged-away token keeps working
    exchanged_token_ttl_s: int = 60 * 24 * 3600  # Meta's long-lived user token: 60 days
    max_messages: int = 100_000  # accepted messages kept for /_sim/messages
    faults: FaultConfig = field(default_factory=FaultConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Read the bridge's variables (ALFRED_TENANTS, META_APP_SECRET, …) and SIMULATOR_*."""
        env = os.environ if environ is None else environ
        tenants = Settings.from_env(env).tenants or {
            "home": Tenant("home", "100000000000001", "200000000000001", Secret("sim-token-home"))
        }

        def num(name: str, default: float) -> float:
            return float(env.get(name, default))

        faults = (
            FaultConfig.from_dict(json.loads(env["SIMULATOR_FAULTS"]))
            if env.get("SIMULATOR_FAULTS")
            else FaultConfig()
        )
        schedule = env.get("SIMULATOR_WEBHOOK_RETRY_SCHEDULE")
        flow = env.get("SIMULATOR_STATUS_FLOW")
        return cls(
            tenants=tenants,
            webhook_url=env.get("SIMULATOR_WEBHOOK_URL")
            or f"http://127.0.0.1:{env.get('PORT', '8080')}/webhook",
            app_secret=env.get("META_APP_SECRET") or DEFAULT_APP_SECRET,
            verify_token=env.get("META_VERIFY_TOKEN"),
            app_id=env.get("SIMULATOR_APP_ID", "1234567890"),
            status_flow=tuple(s for s in flow.split(",") if s)
            if flow is not None
            else cls.status_flow,
            status_delay_s=num("SIMULATOR_STATUS_DELAY_S", cls.status_delay_s),
            batch_statuses=_flag(env, "SIMULATOR_BATCH_STATUSES", True),
            enforce_window=_flag(env, "SIMULATOR_ENFORCE_WINDOW", True),
            pair_interval_s=num("SIMULATOR_PAIR_INTERVAL_S", cls.pair_interval_s),
            pair_burst=int(num("SIMULATOR_PAIR_BURST", cls.pair_burst)),
            webhook_retry_schedule=tuple(float(x) for x in schedule.split(","))
            if schedule
            else cls.webhook_retry_schedule,
            webhook_concurrency=int(num("SIMULATOR_WEBHOOK_CONCURRENCY", cls.webhook_concurrency)),
            webhook_ascii=_flag(env, "SIMULATOR_WEBHOOK_ASCII", False),
            undeliverable=frozenset(
                _digits(x) for x in env.get("SIMULATOR_UNDELIVERABLE", "").split(",") if x.strip()
            ),
            token_grace_s=num("SIMULATOR_TOKEN_GRACE_S", cls.token_grace_s),
            faults=faults,
        )

    def tenant_by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        """Find the tenant owning a phone number id."""
        for tenant in self.tenants.values():
            if tenant.phone_number_id == phone_number_id:
                return tenant
        return None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())
