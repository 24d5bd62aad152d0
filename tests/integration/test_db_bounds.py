"""A PostgreSQL statement cannot hang a worker thread: each is cancelled after a bound."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from alfred import db


@pytest.fixture
def fresh_engines():
    db.get_engine.cache_clear()
    yield
    db.get_engine.cache_clear()


def test_the_bridge_engine_bounds_every_statement(postgresql_url, fresh_engines):
    with db.get_engine(postgresql_url).connect() as connection:
        assert connection.scalar(text("SHOW statement_timeout")) == "30s"


def test_a_statement_past_the_bound_is_cancelled(postgresql_url, fresh_engines, monkeypatch):
    monkeypatch.setattr(db, "STATEMENT_TIMEOUT_MS", 200)
    engine = db.get_engine(postgresql_url)
    with engine.connect() as connection, pytest.raises(OperationalError, match="statement timeout"):
        connection.execute(text("SELECT pg_sleep(2)"))
