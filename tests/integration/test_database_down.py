"""The database down: ingest still reaches the stream and is stored once it is back; sends keep
the token they last read. A PostgreSQL cluster of the test's own is stopped and started (never
the shared server)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from alfred import runtime
from alfred.db import get_engine, session_scope
from alfred.ingest.receive import accept_delivery, ingest_journal
from alfred.ingest.service import drain_ready
from alfred.journals.journal import REDRIVE_AFTER_S
from alfred.journals.sweeper import sweep_all
from alfred.migrate import upgrade
from alfred.models import Message
from alfred.models.messages import INBOUND
from alfred.tasks import ingest_delivery  # noqa: F401 - registers the journals it re-drives
from alfred.tokens import store
from tests.conftest import _reset_caches
from tests.processes import PrivatePostgres
from tests.resilience.harness import delivery, stream_ids

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def private_postgres(env, tmp_path, monkeypatch):
    """Point the bridge at a PostgreSQL cluster of the test's own, migrated; stop it after."""
    server = PrivatePostgres(tmp_path / "pg").init()
    upgrade(server.url)
    monkeypatch.setenv("DATABASE_URL", server.url)
    _reset_caches()
    yield server
    get_engine(server.url).dispose()
    server.stop()


def _inbound_rows(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).where(Message.direction == INBOUND)) or 0)


def test_ingest_reaches_the_stream_with_the_database_down_and_is_stored_once_back(
    private_postgres, redis_client
):
    settings = runtime.settings()
    journal = ingest_journal(redis_client)
    wamids = []
    for index in range(3):
        wamid, body = delivery(index, "dbdown")
        wamids.append(wamid)
        accept_delivery(body, received_at=time.time(), journal=journal, publish=lambda _id: None)
    get_engine(private_postgres.url).dispose()
    private_postgres.stop()

    outcome, _ = drain_ready(settings=settings, client=redis_client)  # the task's body

    assert sorted(stream_ids(redis_client)) == sorted(wamids)
    assert outcome.appended == 3
    assert journal.size() == 3  # kept until stored

    private_postgres.start()
    # When they fall due the sweeper re-drives them (beat, every 10 s); here by hand.
    redriven = sweep_all(now=time.time() + REDRIVE_AFTER_S + 1)
    assert redriven["ingest"] == 3
    drain_ready(settings=settings, client=redis_client)
    assert _inbound_rows(private_postgres.url) == 3
    assert journal.size() == 0
    assert sorted(stream_ids(redis_client)) == sorted(wamids)  # stored, not appended again


def test_a_send_keeps_the_token_it_last_read_while_the_database_is_down(
    private_postgres, monkeypatch
):
    settings = runtime.settings()
    tenant = settings.tenants["home"]
    monkeypatch.setattr(store, "CACHE_SECONDS", 0.0)  # read at every send: aged out at once
    assert store.current_token(tenant, settings).reveal() == tenant.token.reveal()
    get_engine(private_postgres.url).dispose()
    private_postgres.stop()
    assert store.current_token(tenant, settings).reveal() == tenant.token.reveal()
    store.forget()  # nothing read before: the error is the database's, said as it is
    with pytest.raises(Exception, match="connection"):
        store.current_token(tenant, settings)
