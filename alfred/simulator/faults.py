"""Injected faults: what can go wrong, how often, drawn from one seedable RNG."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class FaultConfig:
    """Rates (0..1) and delays of the faults the simulator injects."""

    # Meta error code -> probability that an otherwise good send gets it. Codes Meta reports per
    # message (131026, 131047, 131049, 131053, …) are accepted and then fail by webhook.
    error_rates: Mapping[int, float] = field(default_factory=dict)
    # The same, for one user only (wa_id digits or BSUID -> code -> probability), drawn before
    # error_rates: e.g. {"447700900001": {131056: 1.0}} is Meta's pair limit hit for that user.
    recipient_error_rates: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    latency_ms: float = 0.0  # added to every Graph call
    jitter_ms: float = 0.0  # plus uniform 0..jitter_ms
    timeout_rate: float = 0.0  # send accepted, but the answer is held past client timeouts
    timeout_hold_s: float = 30.0
    drop_rate: float = 0.0  # connection closed with no answer, send not accepted
    duplicate_webhook_rate: float = 0.0  # a webhook POST is delivered twice
    out_of_order_rate: float = 0.0  # a message's statuses arrive in reverse order
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping) -> FaultConfig:
        """Build from JSON, refusing unknown keys and rates outside 0..1."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = dict(data)
        values["error_rates"] = _codes(data.get("error_rates"))
        values["recipient_error_rates"] = {
            str(user): _codes(rates)
            for user, rates in dict(data.get("recipient_error_rates") or {}).items()
        }
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Raise ValueError when a rate is not a probability."""
        rates = [
            self.timeout_rate,
            self.drop_rate,
            self.duplicate_webhook_rate,
            self.out_of_order_rate,
        ]
        rates += list(self.error_rates.values())
        for per_user in self.recipient_error_rates.values():
            rates += list(per_user.values())
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("fault rates must be between 0 and 1")
        tables = [self.error_rates, *self.recipient_error_rates.values()]
        if any(sum(table.values()) > 1.0 for table in tables):
            raise ValueError("error_rates must add up to at most 1")
        if min(self.latency_ms, self.jitter_ms, self.timeout_hold_s) < 0:
            raise ValueError("delays must not be negative")

    def to_dict(self) -> dict:
        """Return the JSON form (error_rates keyed by string code)."""
        data = asdict(self)
        data["error_rates"] = {str(k): v for k, v in self.error_rates.items()}
        data["recipient_error_rates"] = {
            user: {str(k): v for k, v in rates.items()}
            for user, rates in self.recipient_error_rates.items()
        }
        return data


def _codes(rates: Mapping | None) -> dict[int, float]:
    """Read {code: probability} from JSON, where the codes are strings."""
    return {int(k): float(v) for k, v in dict(rates or {}).items()}


class Faults:
    """The live fault settings and their RNG; replaced whole by POST /_sim/faults."""

    __slots__ = ("config", "rng", "_codes", "_by_user", "_active")

    def __init__(self, config: FaultConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        self._codes = _drawable(config.error_rates)
        self._by_user = {
            user: codes
            for user, rates in config.recipient_error_rates.items()
            if (codes := _drawable(rates))
        }
        c = config
        # Lets the hot path skip every draw when nothing is configured.
        self._active = bool(
            self._codes
            or self._by_user
            or c.latency_ms
            or c.jitter_ms
            or c.timeout_rate
            or c.drop_rate
        )

    @property
    def active(self) -> bool:
        """Tell whether any per-request fault is configured."""
        return self._active

    def latency_s(self) -> float:
        """Draw this request's added latency in seconds."""
        c = self.config
        extra = self.rng.uniform(0, c.jitter_ms) if c.jitter_ms else 0.0
        return (c.latency_ms + extra) / 1000.0

    def hit(self, rate: float) -> bool:
        """Draw one Bernoulli trial."""
        return rate > 0 and self.rng.random() < rate

    def error_code(self) -> int | None:
        """Draw the injected error code for a send, if any."""
        return self._draw(self._codes)

    def recipient_error_code(self, *names: str | None) -> int | None:
        """Draw the injected error code of the first of a user's names (wa_id, BSUID) listed."""
        for name in names:
            codes = self._by_user.get(name or "")
            if codes:
                return self._draw(codes)
        return None

    def _draw(self, codes: list[tuple[int, float]]) -> int | None:
        if not codes:
            return None
        draw = self.rng.random()
        for code, rate in codes:
            if draw < rate:
                return code
            draw -= rate
        return None


def _drawable(rates: Mapping[int, float]) -> list[tuple[int, float]]:
    return [(code, rate) for code, rate in rates.items() if rate > 0]
