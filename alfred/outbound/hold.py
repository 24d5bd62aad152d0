"""A send's hold on its message in Redis: the lock, the "calling Meta" marker, the sent mark.

Three scripts, each one round trip and atomic: `take` before the call (is the message already
decided or sent? else lock it, take its pacing slot, raise the marker), `accepted` after Meta's
200 (mark the key sent first, journal the audit record, let go), and `release` for every other
end of a run. See docs/outbound.md, "Exactly once in effect".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from alfred.journals.journal import REDRIVE_AFTER_S
from alfred.outbound.audit_batch import READY_KEY as AUDIT_READY_KEY
from alfred.outbound.audit_batch import audit_journal
from alfred.outbound.pending import outbound_journal
from alfred.outbound.ratelimit import GCRA_LUA
from alfred.streams import SENT_TTL_S

# A sender holds this lock while it calls Meta; longer than the client's connect + read timeout.
LOCK_TTL_MS = 20_000
# After an attempt whose answer never came (a read timeout, a worker killed mid-call), no new
# attempt is made for this long: if Meta did accept the message, its status webhook marks
# the key sent meanwhile, even when that webhook itself must wait for the ingest sweeper
# (due 30 s after arrival, swept every 10 s).
IN_DOUBT_GRACE_S = 45.0
MARKER_TTL_S = 300
# One round trip before a call, atomic: is the outcome already decided (a final outcome, or
# every part sent)? Else take the lock; unless an earlier call is still in doubt, and if the
# window's Redis copy is open (or no window is needed), take the pacing slot of a single-part
# message (GCRA_LUA, shared with SendLimiter) and raise the "calling Meta" marker.
# KEYS: lock, marker, final outcome, the number's and the pair's rate keys, each part's sent
# key, then the recipient's window keys (none when no window is needed).
# ARGV: lock token, lock TTL (ms), now (s), number of parts, in-doubt grace (s), marker TTL (s),
# take a slot ('1'/'0'), then the slot's five arguments (SendLimiter.slot).
_TAKE = (
    GCRA_LUA
    + """
local final = redis.call('GET', KEYS[3])
if final then return {'final', final} end
local parts = tonumber(ARGV[4])
local first = redis.call('GET', KEYS[6])
if first then
  local all = true
  for i = 7, 5 + parts do
    if redis.call('EXISTS', KEYS[i]) == 0 then all = false break end
  end
  if all then return {'duplicate', first} end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy', ''} end
local calling = redis.call('GET', KEYS[2])
if calling and tonumber(calling) + tonumber(ARGV[5]) > tonumber(ARGV[3]) then
  return {'in_doubt', calling}
end
if #KEYS > 5 + parts then
  local open = false
  for i = 6 + parts, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then open = true break end
  end
  if not open then return {'window_unknown', ''} end
end
if ARGV[7] == '1' then
  local allowed, n_wait, p_wait = gcra_take(KEYS[4], KEYS[5], gcra_clock(ARGV[8]),
    tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]))
  if allowed == 0 then
    redis.call('DEL', KEYS[1])
    return {'paced', n_wait, p_wait}
  end
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[6])
return {'go', ARGV[7]}
"""
)
# Meta accepted a call: in one step, mark the key sent (first, so nothing can split the
# two), journal the call's audit record for the batch writer (alfred/outbound/audit_batch.py) and,
# for the last part, release the lock, drop the marker and forget the journaled message.
# KEYS: sent key, audit records, audit due, audit ready list, lock, marker, outbound records,
# outbound due. ARGV: wamid, sent TTL (s), call id, audit record, audit due time, lock token,
# journal entry ('' while parts remain). Returns the ready list's length.
_ACCEPTED = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
local waiting = redis.call('RPUSH', KEYS[4], ARGV[3])
if ARGV[7] ~= '' then
  if redis.call('GET', KEYS[5]) == ARGV[6] then redis.call('DEL', KEYS[5]) end
  redis.call('DEL', KEYS[6])
  redis.call('HDEL', KEYS[7], ARGV[7])
  redis.call('ZREM', KEYS[8], ARGV[7])
end
return waiting
"""
# One round trip after: release the lock if still ours, drop the marker unless an answer is
# in doubt, and forget the journaled message once its outcome is recorded.
# KEYS: lock, marker, journal records, journal due. ARGV: token, keep marker, journal entry.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '0' then redis.call('DEL', KEYS[2]) end
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
end
return 1
"""


@dataclass
class Hold:
    """One run's hold on a message: its lock, its marker, and whether a call is out."""

    lock: str
    marker: str
    token: str
    calling: bool = False  # a crash now leaves Meta's answer in doubt
    released: bool = False  # the accepted script already released the lock


class Holds:
    """The scripts of a process's Redis client, and the journals they touch."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.journal = outbound_journal(client)
        self.audit = audit_journal(client)
        self._take = client.register_script(_TAKE)
        self._accepted = client.register_script(_ACCEPTED)
        self._release = client.register_script(_RELEASE)

    def take(
        self,
        hold: Hold,
        *,
        final_key: str,
        sent_keys: list[str],
        window_keys: list[str],
        slot: tuple[list[str], list],
        take_slot: bool,
        now: float,
    ) -> list:
        """Run the take script; return its answer: [state, detail...].

        `slot` is SendLimiter.slot's keys and arguments; it is taken only with `take_slot`
        (a single-part message: each part of a long one takes its own, before its call).
        """
        slot_keys, slot_args = slot
        return self._take(
            keys=[hold.lock, hold.marker, final_key, *slot_keys, *sent_keys, *window_keys],
            args=[
                hold.token,
                LOCK_TTL_MS,
                repr(now),
                len(sent_keys),
                IN_DOUBT_GRACE_S,
                MARKER_TTL_S,
                int(take_slot),
                *slot_args,
            ],
        )

    def raise_marker(self, hold: Hold, now: float) -> None:
        """Raise the marker outside the take script (the window was found in the database)."""
        self.client.set(hold.marker, repr(now), ex=MARKER_TTL_S)

    def accepted(
        self, hold: Hold, *, sent_key: str, wamid: str, call_id: str, record: str, entry: str
    ) -> int:
        """Mark the key sent and journal the audit record; with `entry`, let the message go.

        Return how many audit records wait, this one included.
        """
        waiting = self._accepted(
            keys=[
                sent_key,
                self.audit.records_key,
                self.audit.due_key,
                AUDIT_READY_KEY,
                hold.lock,
                hold.marker,
                self.journal.records_key,
                self.journal.due_key,
            ],
            args=[
                wamid,
                SENT_TTL_S,
                call_id,
                record,
                time.time() + REDRIVE_AFTER_S,
                hold.token,
                entry,
            ],
        )
        hold.released = bool(entry)
        return int(waiting)

    def release(self, hold: Hold, *, doubtful: bool, entry: str) -> None:
        """Let the message go: the lock, the marker unless in doubt, its journal entry if done."""
        self._release(
            keys=[hold.lock, hold.marker, self.journal.records_key, self.journal.due_key],
            args=[hold.token, int(doubtful), entry],
        )
