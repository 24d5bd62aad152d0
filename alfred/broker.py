"""kombu's Redis transport, reusing one redis-py client per channel for its commands.

kombu builds a new `redis.Redis` for every command it sends outside the consumer's loop: each
publish (`Channel._put`), each queue length. Building one copies redis-py's table of ~170
response callbacks, 14 % of a `send_message.apply_async` in the profiler
(docs/benchmarks.md). A client holds no connection of its own (it borrows one from the pool
per command), so one client per channel serves as well, as long as it is built on the
channel's current pool: kombu drops the pool when the connection is lost.

celeryconfig.py selects it (`broker_transport`); everything else is kombu's.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A kombu Redis channel that builds its synchronous client once per connection pool."""

    _client_for_commands = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the consumer's BRPOP client: kombu caches that one itself
            return super()._create_client(asynchronous=True)
        client = self._client_for_commands
        if client is None or client.connection_pool is not self.pool:
            client = self._client_for_commands = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel
