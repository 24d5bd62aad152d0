"""Send slots shared by every worker: per-number throughput and per-recipient pacing (GCRA).

Meta refuses more than a number's throughput (80 mps by default, 1,000 after the upgrade;
error 130429, FACTS F4) and more than about one message every 6 s to the same user (error
131056, FACTS F5). Both limits are kept in Redis by one Lua script, so every worker and
process draws from the same budget and a check-and-take is atomic. See docs/outbound-limits.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from alfred import metrics

NUMBER_KEY = "alfred:rate:number:{phone_number_id}"
PAIR_KEY = "alfred:rate:pair:{phone_number_id}:{recipient_key}"

# GCRA keeps one number per key, the theoretical arrival time (TAT) of the next message, in
# integer microseconds: Lua numbers are doubles (exact up to 2**53 µs, i.e. 285 years) and
# Redis truncates a script's numeric replies to integers, so seconds would lose precision.
# A request is allowed when now >= TAT - tau (tau = the burst tolerance); taking it moves TAT
# on by one interval. Nothing is written unless BOTH keys allow, so a refusal takes nothing.
# Without an explicit clock, the script reads Redis' own TIME, so workers whose clocks drift
# still agree (Redis 7 replicates a script's effects, which makes TIME safe before writes).
GCRA_LUA = """
local function gcra_clock(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end
local function gcra_take(n_key, p_key, now, n_interval, n_tau, p_interval, p_tau)
  local function tat_of(key)
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then return now end
    return tat
  end
  local n_tat, p_tat = tat_of(n_key), tat_of(p_key)
  local n_wait = math.max(n_tat - n_tau - now, 0)
  local p_wait = math.max(p_tat - p_tau - now, 0)
  if n_wait > 0 or p_wait > 0 then return 0, n_wait, p_wait end
  -- The key lives exactly as long as its TAT is in the future; after that an absent key and
  -- a stale one mean the same thing, so Redis may forget it.
  local n_new, p_new = n_tat + n_interval, p_tat + p_interval
  redis.call('SET', n_key, string.format('%d', n_new), 'PX', math.ceil((n_new - now) / 1000) + 1)
  redis.call('SET', p_key, string.format('%d', p_new), 'PX', math.ceil((p_new - now) / 1000) + 1)
  return 1, 0, 0
end
"""
# KEYS: the number's key, the pair's key. ARGV: the clock ('' = Redis' own), then the
# number's interval and tolerance, the pair's interval and tolerance (microseconds).
_RESERVE = (
    GCRA_LUA
    + """
local allowed, n_wait, p_wait = gcra_take(KEYS[1], KEYS[2], gcra_clock(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
return {allowed, n_wait, p_wait}
"""
)

_MICRO = 1_000_000


@dataclass(frozen=True)
class Reservation:
    allowed: bool
    retry_after_s: float  # 0 when allowed; else how long until BOTH limits would allow
    limited_by: str | None  # "number" | "recipient" | None


class SendLimiter:
    """Takes send slots under a number's mps and a recipient's pacing, atomically in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        pair_interval_s: float = 6.0,
        pair_burst: int = 5,
        number_burst_s: float = 1.0,
    ):
        if pair_interval_s <= 0 or pair_burst < 1 or number_burst_s < 0:
            raise ValueError("pair_interval_s > 0, pair_burst >= 1 and number_burst_s >= 0")
        self._client = client
        self._script = client.register_script(_RESERVE)
        # Rounded up, so the pace is never faster than asked for.
        self._pair_interval_us = math.ceil(pair_interval_s * _MICRO)
        self._pair_tau_us = (pair_burst - 1) * self._pair_interval_us
        self._number_burst_s = number_burst_s

    def slot(
        self,
        *,
        phone_number_id: str,
        mps: int,
        recipient_key: str,
        now: float | None = None,
    ) -> tuple[list[str], list]:
        """Return the keys and arguments of one reservation, as _RESERVE takes them.

        A script that embeds GCRA_LUA (the sender's take script, alfred/outbound/hold.py)
        takes a slot with these in the same round trip as its own work.
        """
        if mps < 1:
            raise ValueError(f"mps must be at least 1, not {mps}")
        number_interval_us = math.ceil(_MICRO / mps)
        number_burst = max(1, round(mps * self._number_burst_s))
        keys = [
            NUMBER_KEY.format(phone_number_id=phone_number_id),
            PAIR_KEY.format(phone_number_id=phone_number_id, recipient_key=recipient_key),
        ]
        args = [
            "" if now is None else str(round(now * _MICRO)),
            number_interval_us,
            (number_burst - 1) * number_interval_us,
            self._pair_interval_us,
            self._pair_tau_us,
        ]
        return keys, args

    def reserve(
        self,
        *,
        tenant_id: str,
        phone_number_id: str,
        mps: int,
        recipient_key: str,
        now: float | None = None,
    ) -> Reservation:
        """Take one slot for this number and recipient, or say how long to wait, taking nothing."""
        keys, args = self.slot(
            phone_number_id=phone_number_id, mps=mps, recipient_key=recipient_key, now=now
        )
        allowed, number_wait_us, pair_wait_us = self._script(keys=keys, args=args)
        if allowed:
            return Reservation(allowed=True, retry_after_s=0.0, limited_by=None)
        return refused(tenant_id, number_wait_us, pair_wait_us)


def refused(tenant_id: str, number_wait_us: int, pair_wait_us: int) -> Reservation:
    """Describe (and count) a refused reservation from the two limits' waits."""
    # The later of the two waits is when both allow: a limit that allows now still
    # allows later, because its TAT only moves when a slot is taken.
    limited_by = "number" if number_wait_us >= pair_wait_us else "recipient"
    metrics.RATE_LIMITED.labels(tenant_id, limited_by).inc()
    return Reservation(
        allowed=False,
        retry_after_s=max(number_wait_us, pair_wait_us) / _MICRO,
        limited_by=limited_by,
    )
