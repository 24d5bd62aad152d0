"""The alert conditions, evaluated over the metrics as ops/prometheus/alerts.yml states them.

Plain functions of a `View`: the values of every process now, and the counters as they were
a window ago (kept in Redis by the notifier). Each returns the tenants (or "all") it fires
for, with a summary. The thresholds are the rules' own; tests/ops check both against the
same scenarios.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alfred.operations.watchdog import OVERRUN_S

# A sample: (metric name, sorted label pairs) -> value.
Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = Mapping[Key, float]

FAILED = ("failed", "dead_lettered", "invalid")
ATTEMPTED = ("sent", *FAILED)
WEEK_S = 7 * 86400
INGEST_LAG_S = 60.0
ROTATION_WINDOW_S = 3600.0

# Counters whose history the notifier keeps (name prefixes): everything else is read now.
HISTORY = (
    "alfred_sends_total",
    "alfred_quarantined_total",
    "alfred_token_rotations_total",
    "alfred_ingest_latency_seconds_bucket",
    "alfred_ingest_latency_seconds_count",
    "alfred_task_overruns_total",
)


def key(name: str, **labels: str) -> Key:
    """Build a sample's key."""
    return name, tuple(sorted(labels.items()))


@dataclass(frozen=True)
class View:
    """The metrics now, and a way to ask what a counter was `seconds` ago."""

    now: float
    current: Samples
    past: Callable[[float], Samples]
    window_s: float
    failure_ratio: float
    heartbeat_stale_s: float = 60.0

    def select(self, name: str, samples: Samples | None = None) -> Iterable[tuple[dict, float]]:
        """Yield (labels, value) of every sample of a metric."""
        for (sample_name, labels), value in (self.current if samples is None else samples).items():
            if sample_name == name:
                yield dict(labels), value

    def increase(self, name: str, seconds: float, by: str | None = None, **match) -> dict:
        """Sum a counter's increase over the last `seconds`, grouped by one label."""
        before = self.past(seconds)
        sums: dict[str, float] = defaultdict(float)
        for labels, value in self.select(name):
            if any(
                labels.get(k) not in (v if isinstance(v, tuple) else (v,)) for k, v in match.items()
            ):
                continue
            then = before.get(key(name, **labels), 0.0)
            # A counter that went back was reset (its process restarted): all of it is new.
            sums[labels.get(by, "all") if by else "all"] += value - then if value >= then else value
        return dict(sums)


@dataclass(frozen=True)
class Condition:
    """One alert: its name (the dedup key's last part), severity, and how long it must hold."""

    name: str
    severity: str
    evaluate: Callable[[View], dict[str, str]]
    for_s: Callable[[View], float] = lambda _view: 0.0


def send_failures(view: View) -> dict[str, str]:
    """A tenant's failed sends reached the ratio over the window."""
    failed = view.increase("alfred_sends_total", view.window_s, by="tenant", outcome=FAILED)
    total = view.increase("alfred_sends_total", view.window_s, by="tenant", outcome=ATTEMPTED)
    firing = {}
    for tenant, count in total.items():
        ratio = failed.get(tenant, 0.0) / count if count else 0.0
        if count and ratio >= view.failure_ratio:
            minutes = round(view.window_s / 60)
            firing[tenant] = f"{tenant}: {ratio:.0%} of sends failed over {minutes} minutes"
    return firing


def quality(view: View) -> dict[str, str]:
    """Meta flagged (2) or downgraded (1) the tenant's number; 0 is unknown, not an alert."""
    return {
        labels["tenant"]: (
            f"{labels['tenant']}: phone number quality dropped "
            f"(rating {value:g}: 2 flagged, 1 downgraded)"
        )
        for labels, value in view.select("alfred_phone_quality_rating")
        if 0 < value < 3
    }


def token(view: View) -> dict[str, str]:
    """The token expires within 7 days, or a rotation failed in the last hour."""
    firing = {}
    for labels, expires_at in view.select("alfred_token_expiry_timestamp_seconds"):
        left = expires_at - view.now
        if expires_at > 0 and left < WEEK_S:
            firing[labels["tenant"]] = (
                f"{labels['tenant']}: the access token expires in {max(left, 0) / 86400:.1f} days"
            )
    failed = view.increase(
        "alfred_token_rotations_total", ROTATION_WINDOW_S, by="tenant", outcome="failed"
    )
    for tenant, count in failed.items():
        if count > 0:
            firing.setdefault(tenant, f"{tenant}: token rotation failed")
    return firing


def quarantine(view: View) -> dict[str, str]:
    """Inbound events keep being quarantined."""
    grown = view.increase("alfred_quarantined_total", view.window_s).get("all", 0.0)
    if grown > 0:
        return {"all": f"inbound events keep being quarantined ({grown:g} in the window)"}
    return {}


def dead_letters(view: View) -> dict[str, str]:
    """A tenant's sends keep being dead-lettered."""
    grown = view.increase("alfred_sends_total", view.window_s, by="tenant", outcome="dead_lettered")
    return {
        tenant: f"{tenant}: sends keep being dead-lettered ({count:g} in the window)"
        for tenant, count in grown.items()
        if count > 0
    }


def ingest_lag(view: View) -> dict[str, str]:
    """The oldest ingest task waited over a minute, or over 5 % of events took over a minute."""
    oldest = max(
        (
            v
            for labels, v in view.select("alfred_queue_oldest_age_seconds")
            if labels.get("queue") == "ingest"
        ),
        default=0.0,
    )
    if oldest > INGEST_LAG_S:
        return {"all": f"inbound events reach «alfred-ingest» {oldest:.0f} s late"}
    # p95 > 60 s <=> more than 5 % of the window's events fell above the 60 s bucket.
    count = view.increase("alfred_ingest_latency_seconds_count", view.window_s).get("all", 0.0)
    within = view.increase(
        "alfred_ingest_latency_seconds_bucket", view.window_s, le=str(INGEST_LAG_S)
    ).get("all", 0.0)
    if count and (count - within) / count > 0.05:
        return {"all": f"{(count - within) / count:.0%} of inbound events took over a minute"}
    return {}


def process_down(view: View) -> dict[str, str]:
    """A process's heartbeat is older than ALERT_HEARTBEAT_STALE_S (a minute)."""
    stale = sorted(
        labels["process"]
        for labels, beat in view.select("alfred_process_heartbeat_timestamp_seconds")
        if view.now - beat > view.heartbeat_stale_s
    )
    if stale:
        return {"all": f"process stopped reporting: {', '.join(stale)}"}
    return {}


def task_overrun(view: View) -> dict[str, str]:
    """A task ran past the watchdog's bound in the window: a worker thread is hung."""
    grown = view.increase("alfred_task_overruns_total", view.window_s, by="task")
    tasks = sorted(task for task, count in grown.items() if count > 0)
    if tasks:
        return {"all": f"tasks ran past {OVERRUN_S:g} s (a hung thread): {', '.join(tasks)}"}
    return {}


CONDITIONS = (
    Condition("send_failures", "critical", send_failures),
    Condition("quality", "warning", quality),
    Condition("token", "critical", token),
    # "Keeps growing": growth in every window for two windows running (the rules' for: 10m).
    Condition("quarantine", "warning", quarantine, for_s=lambda view: 2 * view.window_s),
    Condition("dead_letters", "warning", dead_letters, for_s=lambda view: 2 * view.window_s),
    Condition("ingest_lag", "critical", ingest_lag),
    Condition("process_down", "critical", process_down),
    # Warning: one hung thread of the worker's 16; process_down and ingest_lag page if it spreads.
    Condition("task_overrun", "warning", task_overrun),
)
