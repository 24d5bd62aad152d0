"""The shared send limiter against real Redis: per-number mps, per-recipient pacing, atomicity."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
import redis

from alfred.outbound.ratelimit import NUMBER_KEY, PAIR_KEY, SendLimiter
from tests.conftest import SHARED_REDIS_URL as REDIS_URL

pytestmark = pytest.mark.integration

T0 = 1_000_000.0  # a controlled clock: tests that pass `now` never touch real time


@pytest.fixture
def client(shared_redis):
    """Give a client of the shared Redis database."""
    return shared_redis


@pytest.fixture
def number(client):
    """Give a phone_number_id of this test only, and delete its rate keys afterwards."""
    phone_number_id = f"test-{uuid.uuid4().hex}"
    yield phone_number_id
    for key in client.scan_iter(match=f"alfred:rate:*:{phone_number_id}*", count=1000):
        client.delete(key)


def reserve(limiter, number, recipient, *, mps=80, now=T0):
    """Reserve one slot for a recipient of the test's number."""
    return limiter.reserve(
        tenant_id="test", phone_number_id=number, mps=mps, recipient_key=recipient, now=now
    )


def test_number_limit_refuses_the_eleventh_send_of_one_instant(client, number):
    limiter = SendLimiter(client)
    allowed = [reserve(limiter, number, f"user-{i}", mps=10).allowed for i in range(10)]
    refused = reserve(limiter, number, "user-10", mps=10)
    assert allowed == [True] * 10
    assert not refused.allowed
    assert refused.limited_by == "number"
    assert refused.retry_after_s == pytest.approx(0.1, abs=1e-6)
    assert reserve(limiter, number, "user-11", mps=10, now=T0 + 0.05).retry_after_s == (
        pytest.approx(0.05, abs=1e-6)
    )
    assert reserve(limiter, number, "user-10", mps=10, now=T0 + 0.1).allowed


def test_pair_limit_is_per_recipient(client, number):
    limiter = SendLimiter(client)  # 1 per 6 s, burst 5
    burst = [reserve(limiter, number, "alice").allowed for _ in range(5)]
    refused = reserve(limiter, number, "alice")
    assert burst == [True] * 5
    assert (refused.allowed, refused.limited_by) == (False, "recipient")
    assert refused.retry_after_s == pytest.approx(6.0, abs=1e-6)
    # Alice being paced does not slow Bob down.
    assert [reserve(limiter, number, "bob").allowed for _ in range(5)] == [True] * 5
    assert not reserve(limiter, number, "alice", now=T0 + 5.9).allowed
    assert reserve(limiter, number, "alice", now=T0 + 6.0).allowed
    assert not reserve(limiter, number, "alice", now=T0 + 6.0).allowed


def test_a_refusal_takes_nothing_from_either_limit(client, number):
    limiter = SendLimiter(client, pair_burst=1)
    number_key = NUMBER_KEY.format(phone_number_id=number)
    assert reserve(limiter, number, "alice", mps=2).allowed
    before = client.get(number_key)
    # Refused by Alice's pacing: the number's budget is untouched...
    assert reserve(limiter, number, "alice", mps=2).limited_by == "recipient"
    assert client.get(number_key) == before
    assert reserve(limiter, number, "bob", mps=2).allowed  # ...so Bob gets the 2nd slot.
    # Refused by the number: Carol's pacing is untouched, no key was even written.
    refused = reserve(limiter, number, "carol", mps=2)
    assert (refused.limited_by, refused.retry_after_s) == ("number", pytest.approx(0.5))
    assert not client.exists(PAIR_KEY.format(phone_number_id=number, recipient_key="carol"))
    assert reserve(limiter, number, "carol", mps=2, now=T0 + 0.5).allowed


def test_retry_after_is_when_both_limits_allow(client, number):
    limiter = SendLimiter(client, pair_burst=1, number_burst_s=0)
    assert reserve(limiter, number, "alice", mps=1).allowed
    refused = reserve(limiter, number, "alice", mps=1)
    assert (refused.limited_by, refused.retry_after_s) == ("recipient", pytest.approx(6.0))
    assert not reserve(limiter, number, "alice", mps=1, now=T0 + 5.99).allowed
    assert reserve(limiter, number, "alice", mps=1, now=T0 + 6.0).allowed


def test_server_time_is_used_and_keys_expire_on_their_own(client, number):
    limiter = SendLimiter(client)
    assert reserve(limiter, number, "alice", mps=10, now=None).allowed
    pair_ttl = client.pttl(PAIR_KEY.format(phone_number_id=number, recipient_key="alice"))
    number_ttl = client.pttl(NUMBER_KEY.format(phone_number_id=number))
    assert 0 < number_ttl <= 102
    assert 5_900 < pair_ttl <= 6_001


def _hammer(url: str, number: str, mps: int, burst_s: float, seconds: float, same_user: bool):
    """Reserve as fast as possible for `seconds`; return how many were allowed."""
    limiter = SendLimiter(redis.Redis.from_url(url), number_burst_s=burst_s)
    allowed = calls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        calls += 1
        recipient = "same" if same_user else f"{os.getpid()}-{calls}"
        slot = limiter.reserve(
            tenant_id="test", phone_number_id=number, mps=mps, recipient_key=recipient
        )
        allowed += slot.allowed
    return allowed


def _run_concurrently(number: str, *, mps: int, burst_s: float, same_user: bool):
    """Run four processes reserving on one number for a second; return (allowed, span in s)."""
    with ProcessPoolExecutor(4, mp_context=get_context("fork")) as pool:
        pool.submit(os.getpid).result()  # the pool is up before the clock starts
        started = time.monotonic()
        futures = [
            pool.submit(_hammer, REDIS_URL, number, mps, burst_s, 1.0, same_user) for _ in range(4)
        ]
        allowed = sum(f.result() for f in futures)
        return allowed, time.monotonic() - started


def test_concurrent_processes_never_exceed_the_number_rate(number):
    # Burst 10 and 50 mps: at most 10 + 50 * span may pass, whatever the contention.
    allowed, span = _run_concurrently(number, mps=50, burst_s=0.2, same_user=False)
    assert allowed <= 10 + 50 * span + 1
    assert allowed >= 50 * 1.0 * 0.9  # and the budget is actually used


def test_concurrent_processes_never_exceed_one_recipients_pace(number):
    allowed, _ = _run_concurrently(number, mps=1000, burst_s=1.0, same_user=True)
    assert allowed == 5  # the burst; the next slot is 6 s away
