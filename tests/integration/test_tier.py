"""The tier meter on real Redis: a user counts once per rolling 24 h; a warning near the limit."""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import REGISTRY

from alfred.outbound.tier import TIER_KEY, WINDOW_S, TierMeter

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


@pytest.fixture
def client(shared_redis):
    """Give a client of the shared Redis database."""
    return shared_redis


@pytest.fixture
def tenant(client):
    """Give a tenant id of this test only, and delete its sorted set afterwards."""
    tenant_id = f"test-{uuid.uuid4().hex}"
    yield tenant_id
    client.delete(TIER_KEY.format(tenant_id=tenant_id))


def sample(name: str, tenant: str) -> float | None:
    """Read one metric sample of a tenant from the default registry."""
    return REGISTRY.get_sample_value(name, {"tenant": tenant})


def test_a_user_counts_once_per_rolling_24_hours(client, tenant):
    meter = TierMeter(client)
    assert meter.record(tenant, "alice", now=T0) == 1
    assert meter.record(tenant, "alice", now=T0 + 3600) == 1
    assert meter.record(tenant, "bob", now=T0 + 7200) == 2
    assert meter.record(tenant, "alice", now=T0 + WINDOW_S - 1) == 2
    assert meter.usage(tenant, now=T0 + WINDOW_S - 1) == 2
    # Alice's conversation opened at T0 has ended; Bob's (T0 + 2 h) has not.
    assert meter.usage(tenant, now=T0 + WINDOW_S) == 1
    assert sample("alfred_business_initiated_conversations_24h", tenant) == 1
    # Contacted again after her 24 h, Alice opens a new conversation and counts again.
    assert meter.record(tenant, "alice", now=T0 + WINDOW_S + 1) == 2
    assert meter.usage(tenant, now=T0 + WINDOW_S + 7200) == 1
    assert meter.usage(tenant, now=T0 + 2 * WINDOW_S + 2) == 0


def test_a_warning_once_usage_crosses_the_ratio(client, tenant, caplog):
    meter = TierMeter(client, limit=10, warn_ratio=0.8)
    caplog.set_level(logging.WARNING, logger="alfred.outbound.tier")
    for i in range(7):
        meter.record(tenant, f"user-{i}", now=T0 + i)
    assert not caplog.records
    assert meter.record(tenant, "user-7", now=T0 + 7) == 8
    meter.record(tenant, "user-7", now=T0 + 8)  # the same user again: no new crossing
    meter.record(tenant, "user-8", now=T0 + 9)
    warnings = [r for r in caplog.records if r.getMessage() == "tier.near_limit"]
    assert len(warnings) == 1
    assert (warnings[0].tenant_id, warnings[0].usage, warnings[0].limit) == (tenant, 8, 10)
    assert sample("alfred_tier_warnings_total", tenant) == 1
    assert sample("alfred_business_initiated_conversations_24h", tenant) == 9


def test_server_time_and_expiry(client, tenant):
    meter = TierMeter(client)
    assert meter.record(tenant, "alice") == 1
    assert meter.usage(tenant) == 1
    assert 0 < client.ttl(TIER_KEY.format(tenant_id=tenant)) <= WINDOW_S + 3600
