"""Everything the simulated Cloud API remembers; touched only from its event loop."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from alfred.simulator.config import SimulatorConfig


def digits(phone: str) -> str:
    """Return a phone number's digits, which is what Meta's wa_id is."""
    return "".join(ch for ch in phone if ch.isdigit())


def bsuid_for(waba_id: str | None, wa_id: str) -> str:
    """Derive a stable business-scoped user id for a phone number (same user, same id)."""
    number = int.from_bytes(hashlib.sha256(f"{waba_id}:{wa_id}".encode()).digest()[:8], "big")
    return f"US.{number:020d}"


# The (business number, user) pair buckets kept at most; least recently used go first.
MAX_PAIR_BUCKETS = 10_000

# attempts = delivered + non_2xx + connection_errors; retried counts re-attempts only.
WEBHOOK_COUNTERS = ("delivered", "retried", "failed", "attempts", "non_2xx", "connection_errors",
                    "duplicated", "statuses")  # fmt: skip


class TokenBucket:
    """A token bucket: `rate` tokens a second, holding at most `capacity`."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


@dataclass
class User:
    """A simulated WhatsApp user as one business sees them."""

    user_id: str  # BSUID
    wa_id: str | None  # None: the user hid the number behind a username
    username: str | None = None
    profile_name: str | None = None
    last_inbound: float | None = None  # opens the 24-hour customer-service window


@dataclass
class TokenInfo:
    """An access token and what it may do."""

    phone_number_ids: set[str]
    waba_ids: set[str]
    issued_at: int
    expires_at: int = 0  # 0: never, as Meta reports system-user tokens
    valid_until: float | None = None  # set when exchanged away: the grace period ends here


@dataclass
class Stats:
    """Counters behind GET /_sim/stats."""

    accepted: Counter = field(default_factory=Counter)  # tenant -> n
    rejected: defaultdict = field(default_factory=lambda: defaultdict(Counter))  # tenant -> code
    failed_async: defaultdict = field(default_factory=lambda: defaultdict(Counter))
    marked_read: Counter = field(default_factory=Counter)
    inbound: Counter = field(default_factory=Counter)
    webhooks: Counter = field(default_factory=Counter)  # delivered, retried, failed, …
    key_counts: dict = field(default_factory=dict)  # biz_opaque_callback_data -> sends
    duplicate_keys: dict = field(default_factory=dict)  # only the keys seen more than once


class SimState:
    """The simulator's memory: users, windows, limits, tokens, templates, media, messages."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.started = time.time()
        self._prefix = os.urandom(4)
        self._seq = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget everything back to the configured starting point."""
        cfg = self.config
        self.stats = Stats()
        self.users: dict[str, dict[str, User]] = {t: {} for t in cfg.tenants}  # by wa_id/BSUID
        self.mps: dict[str, TokenBucket] = {}
        self.pairs: dict[tuple[str, str], TokenBucket] = {}
        self.messages: deque[dict] = deque(maxlen=cfg.max_messages)
        # Sends refused on the request (throttled, injected, template): when, whose, which key.
        self.refusals: deque[dict] = deque(maxlen=cfg.max_messages)
        self.by_wamid: dict[str, dict] = {}
        self.inbound_wamids: dict[str, str] = {}  # inbound wamid -> phone_number_id
        self.media: dict[str, dict] = {}
        self.templates: dict[str, list[dict]] = {}
        self.tokens: dict[str, TokenInfo] = {}
        # WABA -> its override_callback_uri (None: none); absent: our app is not subscribed.
        self.subscriptions: dict[str, str | None] = {}
        self.phone_overrides: dict[str, dict] = {}  # phone_number_id -> fields set by control
        now = int(time.time())
        for tenant in cfg.tenants.values():
            info = self.tokens.setdefault(
                tenant.token.reveal(), TokenInfo(set(), set(), issued_at=now)
            )
            info.phone_number_ids.add(tenant.phone_number_id)
            if tenant.waba_id:
                info.waba_ids.add(tenant.waba_id)
                self.subscriptions[tenant.waba_id] = None
                self.templates.setdefault(tenant.waba_id, [self.hello_world()])

    def next_id(self) -> int:
        """Return the next number of this run's id sequence."""
        return next(self._seq)

    def new_wamid(self, wa_id: str) -> str:
        """Mint a wamid shaped like Meta's (base64 after `wamid.`)."""
        raw = (
            b"\x15\x02\x00\x11\x18"
            + wa_id.encode()
            + self._prefix
            + self.next_id().to_bytes(8, "big")
        )
        return "wamid.HBgL" + base64.b64encode(raw).decode()

    def hello_world(self) -> dict:
        """Return Meta's sample template, approved, as every new WABA has it."""
        return {
            "id": str(1_000_000_000_000 + self.next_id()),
            "name": "hello_world",
            "parameter_format": "POSITIONAL",
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
                {
                    "type": "BODY",
                    "text": "Welcome and congratulations!! This message demonstrates your ability "
                    "to send a WhatsApp message notification from the Cloud API, hosted by Meta.",
                },
                {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
            ],
        }

    # Users and the customer-service window.
    def user(self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None) -> User:
        """Find or create the user behind a phone number or a BSUID."""
        known = self.users[tenant_id]
        user = (wa_id and known.get(wa_id)) or (user_id and known.get(user_id))
        if user:
            return user
        waba = self.config.tenants[tenant_id].waba_id
        user = User(user_id=user_id or bsuid_for(waba, wa_id or ""), wa_id=wa_id)
        known[user.user_id] = user
        if wa_id:
            known[wa_id] = user
        return user

    def window_open(self, user: User, now: float) -> bool:
        """Tell whether the user wrote within the window."""
        return user.last_inbound is not None and now - user.last_inbound < self.config.window_s

    # Throughput.
    def take_mps(self, phone_number_id: str, mps: int, now: float) -> bool:
        """Take one unit of the number's messages-per-second budget."""
        bucket = self.mps.get(phone_number_id)
        if bucket is None:
            bucket = self.mps[phone_number_id] = TokenBucket(mps, mps, now)
        return bucket.take(now)

    def take_pair(self, phone_number_id: str, user_id: str, now: float) -> bool:
        """Take one unit of the (business number, user) pair budget."""
        key = (phone_number_id, user_id)
        # Least recently used last out: a bucket forgotten after the others refilled long ago
        # comes back full, as it would have been; so the dict stays bounded under any load.
        bucket = self.pairs.pop(key, None)
        if bucket is None:
            cfg = self.config
            bucket = TokenBucket(1.0 / cfg.pair_interval_s, cfg.pair_burst, now)
            if len(self.pairs) >= MAX_PAIR_BUCKETS:
                self.pairs.pop(next(iter(self.pairs)))
        self.pairs[key] = bucket
        return bucket.take(now)

    # Tokens.
    def token_for(self, token: str | None, now: float) -> TokenInfo | None:
        """Return the token's grants if it is valid now."""
        info = self.tokens.get(token or "")
        if info is None:
            return None
        if info.valid_until is not None and now > info.valid_until:
            return None
        if info.expires_at and now > info.expires_at:
            return None
        return info

    # Accepted messages and duplicate detection.
    def record(self, record: dict) -> None:
        """Keep an accepted message and count its idempotency key."""
        self.messages.append(record)
        self.by_wamid[record["wamid"]] = record
        if len(self.by_wamid) > self.config.max_messages:
            # Dicts keep insertion order: drop the oldest.
            self.by_wamid.pop(next(iter(self.by_wamid)))
        key = record.get("key")
        if key is not None:
            stats = self.stats
            count = stats.key_counts.get(key, 0) + 1
            stats.key_counts[key] = count
            if count > 1:
                stats.duplicate_keys[key] = count

    def snapshot_stats(self) -> dict:
        """Return the JSON form of the counters."""
        s = self.stats
        tenants = {}
        for tenant_id in self.config.tenants:
            tenants[tenant_id] = {
                "accepted": s.accepted[tenant_id],
                "rejected": {str(k): v for k, v in s.rejected[tenant_id].items()},
                "failed_async": {str(k): v for k, v in s.failed_async[tenant_id].items()},
                "marked_read": s.marked_read[tenant_id],
                "inbound": s.inbound[tenant_id],
            }
        rejected: Counter = Counter()
        for counts in s.rejected.values():
            rejected.update(counts)
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "sends": {
                "accepted": sum(s.accepted.values()),
                "rejected": {str(k): v for k, v in rejected.items()},
                "rejected_total": sum(rejected.values()),
            },
            "tenants": tenants,
            "webhooks": {**dict.fromkeys(WEBHOOK_COUNTERS, 0), **s.webhooks},
            "duplicates": {
                "keys": dict(s.duplicate_keys),
                "count": len(s.duplicate_keys),
                "extra_sends": sum(v - 1 for v in s.duplicate_keys.values()),
            },
        }
