"""The in-app notifier: the alert conditions evaluated on a schedule, paged to PagerDuty.

For the single-VM deployment, which has no Alertmanager. Each (condition, tenant) pair has
one dedup_key, `alfred:<tenant>:<condition>`, and a state in Redis: `pending` (holding, for
conditions with a duration), `firing` (triggered), or nothing. A trigger is sent once, when
the condition starts; a resolve once, when it clears: never a storm, however often it is
evaluated. An event PagerDuty rejects (400) is logged and counted as sent; one that could
not be delivered (429, 5xx, after the client's retries) is sent again at the next evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import cast

import redis

from alfred import metrics
from alfred.config import OpsSettings
from alfred.operations.backlog import BacklogCollector
from alfred.operations.conditions import CONDITIONS, HISTORY, Condition, Key, Samples, View
from alfred.operations.pagerduty import EventsClient

log = logging.getLogger(__name__)

STATE_KEY = "alfred:alerts:state"
HISTORY_KEY = "alfred:alerts:history"
LOCK_KEY = "alfred:alerts:lock"
# Enough history for the longest look-back (the token rotation's hour) at one run a second.
HISTORY_KEEP_S = 2 * 3600.0
HISTORY_MAX = 4000
# The sections of docs/runbook.md, as the rules' runbook_url names them.
RUNBOOK_ANCHORS = {
    "send_failures": "send-failures",
    "quality": "quality",
    "token": "invalid-token",
    "quarantine": "quarantine",
    "dead_letters": "dead-letters",
    "ingest_lag": "ingest-lag",
    "process_down": "process-down",
    "task_overrun": "task-overrun",
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dedup_key(tenant: str, condition: str) -> str:
    """Name the incident of one condition for one tenant (CONTRACT.md)."""
    return f"alfred:{tenant}:{condition}"


def current_samples(client: redis.Redis) -> dict[Key, float]:
    """Read every process's values and the backlogs, as the metrics port would show them."""
    samples: dict[Key, float] = {}
    for family in metrics.registry(BacklogCollector(lambda: client)).collect():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class History:
    """Counters as they were at past evaluations, kept in a Redis sorted set by time."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def record(self, now: float, samples: Samples) -> None:
        kept = [
            [name, list(labels), value]
            for (name, labels), value in samples.items()
            if name.startswith(HISTORY)
        ]
        member = json.dumps({"t": now, "s": kept})
        pipe = self.client.pipeline()
        pipe.zadd(HISTORY_KEY, {member: now})
        pipe.zremrangebyscore(HISTORY_KEY, "-inf", now - HISTORY_KEEP_S)
        pipe.zremrangebyrank(HISTORY_KEY, 0, -HISTORY_MAX - 1)
        pipe.execute()

    def at(self, moment: float) -> dict[Key, float]:
        """Return the newest snapshot at or before `moment`, else the oldest there is."""
        found = self.client.zrevrangebyscore(HISTORY_KEY, moment, "-inf", start=0, num=1)
        if not found:
            found = self.client.zrange(HISTORY_KEY, 0, 0)
        if not found:
            return {}
        snapshot = json.loads(cast(bytes, found[0]))
        return {
            (name, tuple(tuple(p) for p in labels)): value for name, labels, value in snapshot["s"]
        }


class Notifier:
    """Evaluates the conditions and pages PagerDuty on their transitions."""

    def __init__(
        self,
        client: redis.Redis,
        ops: OpsSettings,
        *,
        events: EventsClient | None = None,
        conditions: Iterable[Condition] = CONDITIONS,
    ):
        self.client = client
        self.ops = ops
        self.conditions = tuple(conditions)
        self.history = History(client)
        if events is None and ops.pagerduty_routing_key:
            events = EventsClient(
                ops.pagerduty_events_url, ops.pagerduty_routing_key, source=ops.instance
            )
        self.events = events

    def evaluate(self, now: float | None = None, samples: Samples | None = None) -> dict:
        """Evaluate every condition once; send what changed. Returns the firing dedup keys."""
        now = time.time() if now is None else now
        samples = current_samples(self.client) if samples is None else samples
        view = View(
            now=now,
            current=samples,
            past=lambda seconds: self.history.at(now - seconds),
            window_s=self.ops.alert_window_s,
            failure_ratio=self.ops.alert_send_failure_ratio,
            heartbeat_stale_s=self.ops.heartbeat_stale_s,
        )
        active: dict[str, tuple[Condition, str, str]] = {}
        for condition in self.conditions:
            try:
                firing = condition.evaluate(view)
            except Exception:
                log.exception("alert.condition_failed", extra={"condition": condition.name})
                continue
            for tenant, summary in firing.items():
                active[dedup_key(tenant, condition.name)] = (condition, tenant, summary)
        self.history.record(now, samples)
        states = {_text(k): json.loads(v) for k, v in self.client.hgetall(STATE_KEY).items()}
        for key_, (condition, tenant, summary) in active.items():
            self._hold(key_, states.get(key_), condition, tenant, summary, view)
        for key_, state in states.items():
            if key_ not in active:
                self._clear(key_, state)
        return {k: v[2] for k, v in active.items()}

    def _hold(self, key_, state, condition: Condition, tenant, summary, view: View) -> None:
        if state is None:
            state = {"status": "pending", "since": view.now}
            self.client.hset(STATE_KEY, key_, json.dumps(state))
        if state["status"] == "firing" or view.now - state["since"] < condition.for_s(view):
            return
        if self.events is None:
            # Said once per incident, not at every evaluation: `doctor` names the missing key.
            log.error("alert.no_routing_key", extra={"dedup_key": key_, "summary": summary})
            state = {**state, "status": "firing", "summary": summary, "sent_status": None}
            self.client.hset(STATE_KEY, key_, json.dumps(state))
            return
        delivery = self.events.trigger(
            key_,
            summary,
            severity=condition.severity,
            details={
                "tenant": tenant,
                "condition": condition.name,
                "instance": self.ops.instance,
                "runbook": self._runbook(condition.name),
            },
            links=self._links(condition.name),
        )
        if delivery.settled:
            state = {
                **state,
                "status": "firing",
                "summary": summary,
                "sent_status": delivery.status,
            }
            self.client.hset(STATE_KEY, key_, json.dumps(state))

    def _clear(self, key_: str, state: dict) -> None:
        if state["status"] == "firing" and state.get("sent_status") is not None:
            if self.events is None:
                return
            if not self.events.resolve(key_).settled:
                return  # resolved at the next evaluation
        self.client.hdel(STATE_KEY, key_)

    def _runbook(self, condition: str) -> str:
        return f"{self.ops.runbook_url}#{RUNBOOK_ANCHORS.get(condition, condition)}"

    def _links(self, condition: str) -> list[dict]:
        href = self._runbook(condition)
        return [{"href": href, "text": "runbook"}] if href.startswith("http") else []


def evaluate_once(client: redis.Redis, ops: OpsSettings, every_s: float) -> dict | None:
    """Evaluate unless another process did within `every_s` (several processes may call this)."""
    if not client.set(LOCK_KEY, "1", nx=True, px=max(1, int(every_s * 1000 * 0.9))):
        return None
    return Notifier(client, ops).evaluate()
