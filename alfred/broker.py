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
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


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


class Channel(_OneClientPerPool, kombu_redis.Channel):
    """A kombu Redis channel that builds its synchronous client once per connection pool."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


class SentinelChannel(_OneClientPerPool, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, with the same one client per pool."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with the channel above."""

    Channel = SentinelChannel
