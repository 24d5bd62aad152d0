"""A private Redis Sentinel set-up on free ports: one master, replicas, three sentinels.

Debian's `redis-sentinel` (scripts/ensure-services.sh installs it). Each server and sentinel
has a directory of its own (a sentinel rewrites its config file as it learns). Down after 1 s,
so a failover takes a few seconds, not Sentinel's default 30 s.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import free_port
from tests.resilience.harness import PrivateRedis

MASTER_NAME = "alfred"
DOWN_AFTER_MS = 1000


class SentinelSet:
    """Start a master, `replicas` replicas and three sentinels (quorum 2); stop them all."""

    def __init__(self, directory: Path, replicas: int = 2):
        self.directory = directory
        self.master = PrivateRedis(directory / "redis-0")
        self.replicas = [PrivateRedis(directory / f"redis-{n + 1}") for n in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """REDIS_URL for the bridge: every sentinel, database 0, the master's name."""
        parts = [f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports]
        return ";".join(parts) + f"/0?master_name={MASTER_NAME}"

    def servers(self) -> list[PrivateRedis]:
        return [self.master, *self.replicas]

    def start(self) -> SentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.start(replica_of=self.master.port)
        for n, port in enumerate(self.sentinel_ports):
            folder = self.directory / f"sentinel-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    ["redis-sentinel", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(self._all_known, 30, "the sentinels did not find each other and the replicas")
        return self

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

    def _all_known(self) -> bool:
        for replica in self.replicas:
            try:
                link = redis.Redis(port=replica.port).info("replication")
            except redis.RedisError:
                return False
            if link.get("master_link_status") != "up":
                return False
        for port in self.sentinel_ports:
            try:
                state = self._sentinel(port).sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < len(self.replicas):
                return False
        return True

    def master_port(self) -> int | None:
        """The port the sentinels agree is the master's, or None while they disagree."""
        seen = set()
        for port in self.sentinel_ports:
            try:
                _, master = self._sentinel(port).sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                return None
            seen.add(int(master))
        return seen.pop() if len(seen) == 1 else None

    def wait_for_new_master(self, old_port: int, limit_s: float = 30) -> int:
        """Wait until every sentinel names a master other than `old_port`; return its port."""
        self._wait(
            lambda: self.master_port() not in (None, old_port), limit_s, "no failover happened"
        )
        port = self.master_port()
        assert port is not None
        return port

    @staticmethod
    def _wait(predicate, limit_s: float, what: str) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise RuntimeError(what)

    def server_on(self, port: int) -> PrivateRedis:
        return next(s for s in self.servers() if s.port == port)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            if sentinel.poll() is None:
                sentinel.send_signal(signal.SIGKILL)
                sentinel.wait(10)
        for server in self.servers():
            # SIGKILL: a master told to stop waits up to 10 s for replicas that are gone.
            if server.process is not None and server.process.poll() is None:
                server.resume()
                server.kill()
