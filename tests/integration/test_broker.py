"""The broker transport (alfred/broker.py): kombu's Redis transport with one client per channel."""

from __future__ import annotations

import redis
from celery import Celery

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
