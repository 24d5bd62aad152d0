"""Guards around personal data: settings, hidden SQL parameters, masked logs, bounded streams."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from alfred.config import ConfigError, Settings
from alfred.db import get_engine, session_scope
from alfred.lifecycle.pseudonym import pseudonym
from alfred.logs import JsonFormatter, mask_numbers
from alfred.models import Message
from alfred.streams import INGEST_STREAM, IngestStream

KEY = "k" * 32


def settings(**env) -> Settings:
    return Settings.from_env({"ALFRED_VAR_DIR": "/tmp", **env})


def test_a_server_database_needs_a_pii_hash_key_of_32_characters():
    with pytest.raises(ConfigError, match="PII_HASH_KEY is required"):
        settings(DATABASE_URL="postgres://db/alfred")
    with pytest.raises(ConfigError, match="at least 32"):
        settings(DATABASE_URL="postgres://db/alfred", PII_HASH_KEY="short")
    s = settings(DATABASE_URL="postgres://db/alfred", PII_HASH_KEY=KEY, PII_HOT_DAYS="7")
    assert (s.pii_hot_days, s.pii_cold_days) == (7, 90)
    assert KEY not in repr(s)
    with pytest.raises(ConfigError, match="PII_COLD_DAYS must be a whole number"):
        settings(PII_COLD_DAYS="ninety")


def test_the_same_person_maps_to_the_same_pseudonym_and_keys_differ():
    a, b = pseudonym(KEY.encode(), "15551234567"), pseudonym(KEY.encode(), "15551234567")
    assert a == b and a.startswith("h:") and len(a) <= 32 and "1555" not in a
    assert pseudonym(b"another-key" * 3, "15551234567") != a
    assert pseudonym(KEY.encode(), a) == a  # a pseudonym stays itself on a second pass
    assert pseudonym(KEY.encode(), None) is None


def test_a_database_error_names_no_parameter(database_url):
    with session_scope(database_url) as session:
        session.add(Message(tenant_id="home", direction="inbound", wamid="w1", type="text",
                            status="received", body="first"))  # fmt: skip
    with pytest.raises(IntegrityError) as caught, session_scope(database_url) as session:
        session.add(Message(tenant_id="home", direction="inbound", wamid="w1", type="text",
                            status="received", body="my secret words",
                            wa_id="15551234567"))  # fmt: skip
    shown = str(caught.value)
    assert "my secret words" not in shown and "15551234567" not in shown
    assert "hidden due to hide_parameters" in shown


def test_sqlite_overwrites_deleted_content(sqlite_url):
    with get_engine(sqlite_url).connect() as connection:
        assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1


def test_log_lines_mask_phone_numbers_in_the_event_fields_and_tracebacks():
    record = logging.makeLogRecord({"msg": "sending to +14155551234", "levelname": "INFO",
                                    "name": "t", "to": "447700900123", "entry_id": "1733-0",
                                    "tenant_id": "home", "count": 15551234567})  # fmt: skip
    try:
        raise ValueError("bad number 15559876543")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    data = json.loads(line)
    for number in ("4155551234", "447700900123", "15559876543"):
        assert number not in line
    assert data["event"].endswith("34") and data["tenant_id"] == "home"
    assert data["entry_id"] == "1733-0"
    assert mask_numbers("id 42, entry 1733000000000-0") == "id 42, entry 1733000000000-0"


def test_ingest_appends_keep_the_stream_within_maxlen(redis_client):
    stream = IngestStream(redis_client, maxlen=100)
    for n in range(1000):
        stream.append_once(tenant_id="home", event="message", dedupe_key=f"d{n}", payload="{}")
    # MAXLEN ~ trims whole nodes: never far above the bound, never unbounded.
    assert redis_client.xlen(INGEST_STREAM) < 300
