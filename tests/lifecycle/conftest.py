"""The lifecycle's fixture: both tenants seeded, a run at a moved clock."""

from __future__ import annotations

import pytest

from alfred import runtime
from alfred.blobstore import store_for
from alfred.lifecycle import service
from tests.lifecycle.data import NOW, seed


@pytest.fixture
def lifecycle(blob_store_url, env, redis_client):
    """Seed both tenants and give a function that runs the lifecycle at a time."""
    settings = runtime.settings()
    store = store_for(settings)
    planted = seed(settings.database_url, redis_client, store=store)

    def run(now=NOW, **kwargs):
        return service.run(settings, store=store, client=redis_client, now=now, **kwargs)

    return settings, store, planted, run
