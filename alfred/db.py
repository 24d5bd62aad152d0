"""The SQLAlchemy engine and sessions, one per database URL, shared by web and worker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# The database itself failing (down, unreachable, a statement timed out), not our SQL: ingest
# appends to the stream without it and stores later (alfred/ingest/service.py).
DATABASE_ERRORS = (OperationalError, InterfaceError)
# Redis or the database out of reach: a batch (ingest, the audit trail) goes back for a retry
# instead of being written one by one.
INFRASTRUCTURE = (redis.RedisError, *DATABASE_ERRORS)

# Longer than any statement the bridge runs (milliseconds), shorter than a stuck one.
STATEMENT_TIMEOUT_MS = 30_000


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """Create (once per URL) an engine tuned for short transactions."""
    # hide_parameters: a failed statement's error (logged, retried, shown by Flower) names the
    # statement but never its values, which are users' words and phone numbers.
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection the server dropped
    # fails its statement instead; the task retries (autoretry on OperationalError), the pool
    # replaces the connection, and pool_recycle keeps idle ones younger than poolers' cut-off.
    # A statement waits at most STATEMENT_TIMEOUT_MS (a lock held by a stuck transaction, say):
    # the worker's threads pool cannot kill a hung task, so each blocking call is bounded.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_recycle=300,
        connect_args={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
        hide_parameters=True,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a worker writes; busy_timeout waits out a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, not left readable in free pages (privacy.md).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on any error."""
    session = _session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dialect_insert(session: Session):
    """Return the INSERT construct of the session's dialect (for ON CONFLICT clauses)."""
    return insert_for(session.get_bind().dialect.name)


def insert_for(dialect: str):
    """Return the INSERT construct of a dialect by name (PostgreSQL, else SQLite)."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def insert_ignoring_conflicts(
    session: Session, table: Any, rows: Sequence[dict], keys: Sequence[str]
):
    """Insert rows, skipping those whose unique keys already exist (PostgreSQL and SQLite).

    The rows go as parameters of one statement (executemany), so the statement is compiled
    once and cached, however many rows and deliveries come through.
    """
    if not rows:
        return None
    statement = dialect_insert(session)(table).on_conflict_do_nothing(index_elements=list(keys))
    return session.execute(statement, list(rows))
