"""PagerDuty's Events API v2: trigger and resolve, retried on 429 and 5xx, never on 400.

PagerDuty answers 202 when it took the event, 400 when the event is malformed (retrying the
same bytes cannot help), 429 when the integration key sends too fast (about 120 events a
minute) and 5xx when it is in trouble. urllib3's Retry does the waiting: exponential back-off,
or the server's Retry-After when it sends one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from alfred import metrics
from alfred.config import Secret

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Delivery:
    """What became of one event: delivered (202), rejected (400, not retried), or neither."""

    status: int | None
    detail: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        """PagerDuty refused the event itself: sending it again would be refused again."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429

    @property
    def settled(self) -> bool:
        """Nothing more to do with this event (delivered, or rejected and logged)."""
        return self.delivered or self.rejected


class EventsClient:
    """Posts Events API v2 events to `url` with the integration key `routing_key`."""

    def __init__(
        self,
        url: str,
        routing_key: Secret,
        *,
        source: str,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
    ):
        self.url = url
        self.routing_key = routing_key
        self.source = source
        self.timeout_s = timeout_s
        self.session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_s,
            backoff_max=60.0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),  # POST is not retried by default
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session.mount(url, HTTPAdapter(max_retries=retry))

    def trigger(
        self, dedup_key: str, summary: str, *, severity: str, details: dict, links: list[dict]
    ) -> Delivery:
        """Open (or add to) the incident of `dedup_key`."""
        return self._post(
            {
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": summary[:1024],  # PagerDuty's limit
                    "source": self.source,
                    "severity": severity,
                    "component": details.get("tenant"),
                    "class": details.get("condition"),
                    "custom_details": details,
                },
                "links": links,
                "client": "alfred",
            },
            dedup_key,
        )

    def resolve(self, dedup_key: str) -> Delivery:
        """Close the incident of `dedup_key`."""
        return self._post({"event_action": "resolve", "dedup_key": dedup_key}, dedup_key)

    def _post(self, event: dict, dedup_key: str) -> Delivery:
        action = event["event_action"]
        condition = dedup_key.rsplit(":", 1)[-1]
        body = {"routing_key": self.routing_key.reveal(), **event}
        try:
            answer = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            delivery = Delivery(None, f"{type(exc).__name__}: {exc}")
        else:
            delivery = Delivery(answer.status_code, answer.text[:500])
        outcome = (
            "delivered" if delivery.delivered else "rejected" if delivery.rejected else "failed"
        )
        metrics.ALERT_EVENTS.labels(condition, action, outcome).inc()
        fields = {"dedup_key": dedup_key, "action": action, "status": delivery.status}
        if delivery.delivered:
            log.info("alert.sent", extra=fields)
        elif delivery.rejected:
            log.error("alert.rejected", extra={**fields, "detail": delivery.detail})
        else:
            log.error("alert.undelivered", extra={**fields, "detail": delivery.detail})
        return delivery
