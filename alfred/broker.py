"""kombu's Redis transports, reusing one redis-py client per channel for its commands.

kombu builds a new `redis.Redis` for every command it sends outside the consumer's loop: each
publish (`Channel._put`), each queue length. Building one copies redis-py's table of ~170
response callbacks, 14 % of a `send_message.apply_async` in the profiler
(docs/benchmarks.md). A client holds no connection of its own (it borrows one from the pool
per command), so one client per channel serves as well, as long as it is built on the
channel's current pool: kombu drops the pool when the connection is lost.

celeryconfig.py selects `Transport` for a plain REDIS_URL and `SentinelTransport` for a
`sentinel://` one (alfred/redis_client.py); everything else is kombu's. With Sentinel, kombu's
pool asks the sentinels for the master on each new connection, so a failover is followed.

Both channels also keep message bodies off the disk: when a worker loses Redis while holding
fetched tasks, kombu pickles the ones it cannot put back into a file under /tmp ("EMERGENCY DUMP
STATE"). A send task carries the message text, so that file would be personal data nobody
deletes, and it is useless here: every task is journaled or periodic, and the journals re-drive
it (docs/reliability.md). The task ids are logged instead.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)


class JournaledQoS(virtual.QoS):
    """kombu's QoS for a transport without ack emulation, minus the emergency dump."""

    def restore_unacked(self):
        unrestored = super().restore_unacked()
        if unrestored:
            log.warning(
                "broker.unrestored",
                extra={
                    "count": len(unrestored),
                    "task_ids": [message.headers.get("id") for _, message in unrestored],
                    "error": type(unrestored[0][0]).__name__,
                    "recovery": "the journals re-drive these tasks",
                },
            )
        return []  # nothing left for kombu to dump


class _OneClientPerPool:
    """Build the synchronous client once per connection pool (mixed into kombu's channels)."""

    _client_for_commands = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the consumer's BRPOP client: kombu caches that one itself
            return super()._create_client(asynchronous=True)
        client = self._client_for_commands
        if client is None or client.connection_pool is not self.pool:
            client = self._client_for_commands = super()._create_client()
        return client


class _NoEmergencyDump:
    """Give the channel JournaledQoS (mixed into kombu's channels)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.ack_emulation:  # kombu has just chosen virtual.QoS for this channel
            self.QoS = JournaledQoS


class Channel(_NoEmergencyDump, _OneClientPerPool, kombu_redis.Channel):
    """A kombu Redis channel that builds its synchronous client once per connection pool."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


class SentinelChannel(_NoEmergencyDump, _OneClientPerPool, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, with the same one client per pool."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with the channel above."""

    Channel = SentinelChannel
