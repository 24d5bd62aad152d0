"""The broker transport (alfred/broker.py): kombu's Redis transport with one client per channel."""

from __future__ import annotations

import logging
import tempfile

import redis
from celery import Celery

from alfred.broker import JournaledQoS
from tests.integration.test_outbox_bridge import private_redis  # noqa: F401 - a fixture


def test_publishing_rides_out_a_redis_restart(private_redis):  # noqa: F811
    app = Celery("broker-test", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = f"redis://127.0.0.1:{private_redis.port}/0"
    client = redis.Redis(port=private_redis.port)

    app.send_task("alfred.anything", queue="q")
    with app.connection_for_write() as connection:
        assert type(connection.default_channel).__module__ == "alfred.broker"
    private_redis.kill()
    private_redis.start()  # the same port; the append-only file kept the first task
    # The producer pool hands back the same channel, its client's connections now dead.
    app.send_task("alfred.anything", queue="q")
    app.send_task("alfred.anything", queue="q")
    assert client.llen("q") == 3


def test_tasks_held_when_redis_dies_are_logged_not_dumped_to_disk(
    private_redis,  # noqa: F811
    tmp_path,
    monkeypatch,
    caplog,
):
    # kombu's fallback would pickle the fetched tasks (a send's text included) into a temp file.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = Celery("broker-test", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = f"redis://127.0.0.1:{private_redis.port}/0"
    app.send_task("alfred.anything", args=["personal text"], queue="q", task_id="t-1")
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        assert isinstance(channel.qos, JournaledQoS)
        message = channel.basic_get("q", no_ack=False)
        assert message is not None and message.headers["id"] == "t-1"
        private_redis.kill()
        with caplog.at_level(logging.WARNING, logger="alfred.broker"):
            channel.qos.restore_unacked_once()
    private_redis.start()
    assert list(tmp_path.iterdir()) == []
    (record,) = [r for r in caplog.records if r.getMessage() == "broker.unrestored"]
    assert record.task_ids == ["t-1"] and record.count == 1
    assert "personal text" not in caplog.text
