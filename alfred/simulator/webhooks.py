"""Meta-shaped webhook payloads and their signed delivery, with batching and retries."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable

import aiohttp

from alfred.config import Tenant
from alfred.simulator.config import SimulatorConfig
from alfred.simulator.errors import webhook_error
from alfred.simulator.faults import Faults
from alfred.simulator.state import SimState
from alfred.whatsapp.signature import sign

log = logging.getLogger(__name__)
TICK_S = 0.01  # how often due statuses are collected into POSTs


def display_number(tenant: Tenant) -> str:
    """Return the tenant's simulated display phone number (Meta's test numbers are 1555…)."""
    return "1555" + tenant.phone_number_id[-7:].rjust(7, "0")


def envelope(waba_id: str | None, field: str, value: dict, entry_time: int | None = None) -> dict:
    """Wrap one change in Meta's `whatsapp_business_account` envelope."""
    entry: dict = {"id": waba_id or "0", "changes": [{"value": value, "field": field}]}
    if entry_time is not None:
        entry["time"] = entry_time
    return {"object": "whatsapp_business_account", "entry": [entry]}


def messages_value(tenant: Tenant, **parts: list) -> dict:
    """Build the `value` of a `messages` change for a tenant's number."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_number(tenant),
            "phone_number_id": tenant.phone_number_id,
        },
    }
    value.update(parts)
    return value


# Webhook versions from v24.0 omit `conversation` (webhooks/reference/messages/status).
CONVERSATION_UNTIL_MAJOR = 24


def status_item(record: dict, status: str, errors: list | None = None) -> dict:
    """Build one `statuses[]` item for an accepted message, stamped now."""
    now = int(time.time())
    item: dict = {"id": record["wamid"], "status": status, "timestamp": str(now)}
    if record["recipient_id"]:
        item["recipient_id"] = record["recipient_id"]
    item["recipient_user_id"] = record["user_id"]
    if errors:
        item["errors"] = errors
    elif status in ("sent", "delivered"):
        # Pricing rides on sent and one of delivered or read; never on failed.
        category = record["category"]
        if record.get("api_major", 0) < CONVERSATION_UNTIL_MAJOR:
            item["conversation"] = {"id": record["conversation_id"], "origin": {"type": category}}
            if status == "sent":
                item["conversation"]["expiration_timestamp"] = str(now + 24 * 3600)
        # Per-message pricing (PMP) since July 2025: service and utility in the window are free.
        free = record.get("free", category == "service")
        item["pricing"] = {
            "billable": not free,
            "pricing_model": "PMP",
            "type": "free_customer_service" if free else "regular",
            "category": category,
        }
    if record.get("key") is not None:
        item["biz_opaque_callback_data"] = record["key"]
    return item


def status_contact(record: dict, status: str) -> dict | None:
    """Return the recipient's `contacts[]` entry of a status; failed statuses carry none.

    Business-scoped user IDs page: sent, delivered and read statuses carry the user's contact
    (`wa_id` unless hidden, `user_id`); the username appears on delivered and read only.
    """
    if status == "failed":
        return None
    contact: dict = {}
    if record.get("username") and status != "sent":
        contact["profile"] = {"username": record["username"]}
    if record["recipient_id"]:
        contact["wa_id"] = record["recipient_id"]
    contact["user_id"] = record["user_id"]
    return contact


def statuses_value(tenant: Tenant, due: list[tuple[dict, str, list | None]]) -> dict:
    """Build a `messages` change holding statuses and their recipients' contacts."""
    items, contacts = [], {}  # one contact per user, in order of first status
    for record, status, errors in due:
        items.append(status_item(record, status, errors))
        contact = status_contact(record, status)
        if contact is not None:
            known = contacts.setdefault(contact["user_id"], contact)
            if "profile" in contact:
                known["profile"] = contact["profile"]
    if contacts:
        return messages_value(tenant, contacts=list(contacts.values()), statuses=items)
    return messages_value(tenant, statuses=items)


class WebhookDispatcher:
    """Deliver signed callbacks from one ClientSession, batching statuses per number."""

    def __init__(self, config: SimulatorConfig, state: SimState, faults: Callable[[], Faults]):
        self.config = config
        self.state = state
        self.faults = faults
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task | None = None
        self._secret = config.app_secret

    async def start(self) -> None:
        """Open the callback session and start collecting due statuses."""
        cfg = self.config
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.webhook_concurrency),
            timeout=aiohttp.ClientTimeout(total=cfg.webhook_timeout_s),
            headers={"User-Agent": "facebookexternalua", "Content-Type": "application/json"},
        )
        self._ticker = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop collecting, abandon pending deliveries and close the session."""
        tasks = [t for t in (self._ticker, *self._tasks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    def pending(self) -> dict:
        """Count statuses not yet due and deliveries under way."""
        return {"scheduled_statuses": len(self._heap), "deliveries_in_flight": len(self._tasks)}

    def clear(self) -> None:
        """Forget scheduled statuses (deliveries under way finish)."""
        self._heap.clear()

    def schedule(self, record: dict, steps: list[tuple[float, str, list | None]]) -> None:
        """Queue a message's statuses, each `(delay_s, status, errors)` from now."""
        if not self.config.webhook_url:
            return
        now = asyncio.get_running_loop().time()
        for delay, status, errors in steps:
            heapq.heappush(self._heap, (now + delay, next(self._seq), record, status, errors))

    def deliver(self, payload: dict) -> None:
        """Send one payload now (inbound messages, template updates)."""
        if self.config.webhook_url:
            self._spawn(self._encode(payload))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            if self._heap:
                self._flush(loop.time())

    def _flush(self, now: float) -> None:
        heap = self._heap
        due: dict[str, list[tuple]] = defaultdict(list)
        while heap and heap[0][0] <= now:
            _, _, record, status, errors = heapq.heappop(heap)
            due[record["tenant"]].append((record, status, errors))
        batch = self.config.max_batch if self.config.batch_statuses else 1
        for tenant_id, items in due.items():
            tenant = self.config.tenants[tenant_id]
            self.state.stats.webhooks["statuses"] += len(items)
            for i in range(0, len(items), batch):
                value = statuses_value(tenant, items[i : i + batch])
                self._spawn(self._encode(envelope(tenant.waba_id, "messages", value)))

    def _encode(self, payload: dict) -> bytes:
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=self.config.webhook_ascii
        ).encode()

    def _spawn(self, body: bytes) -> None:
        copies = 2 if self.faults().hit(self.faults().config.duplicate_webhook_rate) else 1
        if copies == 2:
            self.state.stats.webhooks["duplicated"] += 1
        for _ in range(copies):
            task = asyncio.create_task(self._post(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, body: bytes) -> None:
        stats = self.state.stats.webhooks
        headers = {"X-Hub-Signature-256": sign(body, self._secret)}
        schedule = self.config.webhook_retry_schedule
        assert self._session is not None
        for attempt in range(len(schedule) + 1):
            if attempt:
                await asyncio.sleep(schedule[attempt - 1])
                stats["retried"] += 1
            stats["attempts"] += 1
            try:
                async with self._session.post(
                    self.config.webhook_url, data=body, headers=headers
                ) as r:
                    await r.read()
                    if 200 <= r.status < 300:
                        stats["delivered"] += 1
                        return
                    stats["non_2xx"] += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                stats["connection_errors"] += 1
                log.debug("webhook delivery failed: %r", exc)
        stats["failed"] += 1
        log.warning("webhook abandoned after %d attempts", len(schedule) + 1)


def failed_steps(code: int) -> list[tuple[float, str, list | None]]:
    """Return the status steps of a message Meta accepts but cannot deliver."""
    return [(0.0, "failed", [webhook_error(code)])]
