"""Real processes for tests: the web under gunicorn with the repo's gunicorn.conf.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import redis
import requests

from alfred.config import REPO_ROOT
from tests.conftest import free_port


def wait_until_ready(url: str, process: subprocess.Popen | None = None, limit_s=30.0) -> None:
    """Poll url until it answers; fail if the process died first or the limit passed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {limit_s} s")


def start_gunicorn(
    extra_env: dict | None = None,
    *options: str,
    port: int | None = None,
    log: Path | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start the web process as production does (gunicorn.conf.py); return it and its URL.

    With `log`, its output is appended to that file (kept for a failing test to show).
    """
    port = port or free_port()
    process = spawn(
        [
            sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app",
            "--bind", f"127.0.0.1:{port}", *options,
        ],
        extra_env,
        log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/healthz", process)
    except Exception:
        stop(process)
        raise
    return process, url


def spawn(argv: list[str], extra_env: dict | None, log: Path | None) -> subprocess.Popen:
    """Start a process of the stack in the repository, in its own process group.

    Its output (stdout and stderr) is appended to `log` when one is given, else discarded.
    """
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") if log is not None else open(os.devnull, "wb") as output:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **(extra_env or {})},
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


WORKER_CONCURRENCY = 4


def start_worker(
    extra_env: dict | None = None,
    pool: str = "threads",
    concurrency: int = WORKER_CONCURRENCY,
    *,
    log: Path | None = None,
    level: str = "WARNING",
) -> subprocess.Popen:
    """Start the worker as the Procfile does (threads), in its own process group."""
    return spawn(
        [
            sys.executable, "-m", "alfred.worker_app",  # the Procfile's launcher
            "-P", pool, "-c", str(concurrency), "-Q", "ingest,outbound,alfred",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", level,
        ],
        extra_env,
        log,
    )  # fmt: skip


def kill(process: subprocess.Popen) -> None:
    """SIGKILL a process and all its group at once: no warm shutdown, no acks."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the process group and wait, SIGKILLing it if it lingers."""
    try:
        os.killpg(process.pid, sig)
        process.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextmanager
def gunicorn(extra_env: dict | None = None, *options: str):
    """Run gunicorn for the block; stop it after."""
    process, url = start_gunicorn(extra_env, *options)
    try:
        yield url
    finally:
        stop(process)


class PrivateRedis:
    """A redis-server of the test's own, on a free port, with AOF; killable and restartable."""

    def __init__(self, directory: Path, fsync: str = "everysec"):
        self.directory = directory
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, replica_of: int | None = None) -> PrivateRedis:
        """Start it (again, from its AOF); with `replica_of`, as a replica of that port."""
        replica = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        self.process = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", self.fsync, "--maxmemory-policy", "noeviction", *replica,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL it, as the OOM killer or a crashed host would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP it: alive to the kernel, answering nobody (a stalled or partitioned host)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(10)


def consuming(client: redis.Redis, limit_s: float = 60.0) -> None:
    """Wait until a Celery worker consumes from this Redis database (its BRPOP blocks there)."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "brpop" and c.get("db") == db for c in client.client_list()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no worker consumed from Redis within {limit_s} s")


def _postgres_bin() -> Path:
    """The newest PostgreSQL server's programs (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server here (Debian: apt-get install postgresql)")
    return found[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free port (trust, local only); stoppable.

    As root it runs as the `postgres` user, as Debian's clusters do (the server refuses root).
    Never the shared server on 5432: that one is everyone's.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.bin = _postgres_bin()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.user = "postgres" if self._as else os.environ.get("USER", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/alfred"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        """Create the cluster and its `alfred` database, and start it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as:
            # pytest's temporary folders are root's alone: the server's user must reach its own.
            for folder in [self.directory, *self.directory.parents]:
                if folder == Path("/"):
                    break
                folder.chmod(folder.stat().st_mode | 0o711)
            subprocess.run(["chown", "postgres", str(self.directory)], check=True)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", self.user,
            "--no-sync",
        )  # fmt: skip
        self.start()
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
            "alfred",
        )  # fmt: skip
        return self

    def start(self) -> None:
        """Start the server (again) on the same port and data, and wait until it answers."""
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.directory / "server.log"),
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.directory} -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` drops every connection, as a crash or a restart does."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")
