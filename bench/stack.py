"""Start and stop a private bridge stack on free loopback ports, for the bench and the load test.

Everything runs in its own process group so that a stop (or Ctrl-C, or an error) takes the
whole tree down: gunicorn's and Celery's children included. Nothing listens on the default
ports, so a bench never collides with `make test` or `make run`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
APP_SECRET = "bench-app-secret-äöå"
VERIFY_TOKEN = "bench-verify-token"


def make_tenants(count: int) -> dict[str, dict]:
    """Return `count` tenants (home, biz, then t003 …) at Meta's upgraded 1,000 mps each.

    At 1,000 mps the bridge's own limiter never caps the bench. BENCH_TENANTS (default 2)
    sets the count for the bench, its stack and Locust alike: bench/run.py --tenants N.
    """
    names = ["home", "biz", *(f"t{i:03d}" for i in range(3, count + 1))][:count]
    return {
        name: {
            "phone_number_id": f"91{i + 1:013d}",
            "waba_id": f"92{i + 1:013d}",
            "token": f"bench-token-{name}",
            "mps": 1000,
        }
        for i, name in enumerate(names)
    }


TENANTS = make_tenants(int(os.environ.get("BENCH_TENANTS", "2")))
# The bench generates bodies a few seconds before sending them; allow for that, never more.
MAX_SKEW_S = "60"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def tool(name: str) -> str:
    """Return the venv's copy of a console script, or the one on PATH."""
    local = VENV_BIN / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class Proc:
    """One started process group and where its output goes."""

    name: str
    popen: subprocess.Popen
    log: Path
    line: str = ""  # the Procfile line it runs, if any
    port: int = 0
    reads: str = ""  # the blocking Redis command that says it is consuming

    @property
    def pid(self) -> int:
        """Return the group leader's pid."""
        return self.popen.pid


@dataclass
class Stack:
    """A private Redis, database, simulator, web, worker and beat, each startable on its own."""

    db: str = "postgresql"
    web_workers: int = 2
    web_threads: int = 8
    simulator_env: dict[str, str] = field(default_factory=dict)
    logs_dir: Path | None = None

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="alfred-bench-"))
        self.logs_dir = self.logs_dir or self.tmp / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self.redis_port = free_port()
        self.web_port = free_port()
        self.sim_port = free_port()
        self.db_name: str | None = None
        self.database_url = ""
        # One key for every process of the stack, as a fleet shares one (docs/tokens.md).
        self.encryption_key = _fernet_key()
        # A server database needs the lifecycle's hash key too (docs/privacy.md); one per stack.
        self.pii_hash_key = secrets.token_hex(32)
        (self.tmp / "prom").mkdir()
        (self.tmp / "var").mkdir()

    # -- environment -------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        """Return the private Redis' URL."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def web_url(self) -> str:
        """Return the base URL of the web process."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sim_url(self) -> str:
        """Return the base URL of the simulator."""
        return f"http://127.0.0.1:{self.sim_port}"

    def env(self) -> dict[str, str]:
        """Return the environment every process of the stack (and the bench itself) uses."""
        env = dict(os.environ)
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "META_APP_SECRET": APP_SECRET,
                "META_VERIFY_TOKEN": VERIFY_TOKEN,
                "ALFRED_ENCRYPTION_KEY": self.encryption_key,
                "PII_HASH_KEY": self.pii_hash_key,
                # Flower refuses to start without credentials (alfred/operations/flower.py).
                "FLOWER_BASIC_AUTH": f"bench:{self.pii_hash_key[:16]}",
                "ALFRED_TENANTS": json.dumps(TENANTS),
                "GRAPH_API_URL": self.sim_url,
                "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "prom"),
                "ALFRED_VAR_DIR": str(self.tmp / "var"),
                "WEBHOOK_MAX_SKEW_S": MAX_SKEW_S,
                "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                "PYTHONPATH": str(REPO),
                "SIMULATOR_HOST": "127.0.0.1",
                "SIMULATOR_PORT": str(self.sim_port),
                "SIMULATOR_WEBHOOK_URL": f"{self.web_url}/webhook",
                # The bench seeds the bridge's windows directly; the simulator would need an
                # inbound message through itself for each recipient first.
                "SIMULATOR_ENFORCE_WINDOW": "false",
            }
        )
        env.update(self.simulator_env)
        return env

    def apply_to_this_process(self) -> None:
        """Point this process's alfred imports at the stack (before celeryconfig is read)."""
        os.environ.update({k: v for k, v in self.env().items() if k != "PYTHONPATH"})
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from alfred import runtime

        runtime.reset()

    # -- processes -----------------------------------------------------------------------
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO
    ) -> Proc:
        log = self.logs_dir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env or self.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() takes the children too
        )
        handle.close()
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop one process group: SIGTERM (warm shutdown), then SIGKILL if it lingers."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if proc.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(wait)
        # A child that outlived its leader (a gunicorn worker, a pool child) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def start_redis(self) -> None:
        """Start a private redis-server: no persistence, never evicting (Celery needs that)."""
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.tmp),
            ],
        )
        wait_port(self.redis_port)

    def create_database(self) -> None:
        """Create and migrate a fresh database: PostgreSQL (default) or an SQLite file."""
        from sqlalchemy import create_engine, text

        from alfred.migrate import upgrade

        if self.db == "sqlite":
            self.database_url = f"sqlite:///{self.tmp / 'bench.db'}"
        else:
            self.db_name = f"alfred_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{self.db_name}"'))
            admin.dispose()
            self.database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_name}"
        upgrade(self.database_url)

    def drop_database(self) -> None:
        """Drop the bench's PostgreSQL database, if it made one."""
        if not self.db_name:
            return
        from sqlalchemy import create_engine, text

        from alfred.db import get_engine

        with contextlib.suppress(Exception):
            get_engine(self.database_url).dispose()
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        admin.dispose()
        self.db_name = None

    def start_simulator(self) -> None:
        """Start the Cloud API simulator, calling back the web process."""
        self._spawn("simulator", [sys.executable, "-m", "alfred.simulator"])
        wait_port(self.sim_port)

    def web_setting(self) -> str:
        """Describe the gunicorn setting, for the report."""
        return f"gunicorn gthread, {self.web_workers} workers x {self.web_threads} threads"

    def start_web(self, app: str = "wsgi:app", name: str = "web") -> Proc:
        """Start gunicorn (gthread) serving `app` on the stack's web port."""
        proc = self._spawn(
            name,
            [
                tool("gunicorn"),
                app,
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--worker-class",
                "gthread",
                "--workers",
                str(self.web_workers),
                "--threads",
                str(self.web_threads),
                "--backlog",
                "2048",
                "--log-level",
                "warning",
                "--preload",  # as the Procfile: the app imported once, shared by the workers
            ],
        )
        wait_port(self.web_port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the port opens before the workers have booted
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.web_url}/healthz", timeout=1).status_code < 500:
                    break
            time.sleep(0.1)
        return proc

    def start_procfile(
        self, name: str, *, label: str | None = None, app: str | None = None, port: int = 0
    ) -> Proc:
        """Start the Procfile's own line for `name` (bench/procfile.py) and wait until it serves.

        web (and its no-work twin, `app` swapped) gets PORT, as honcho gives it; flower gets a
        free port for its fixed one. Each runs in the repo, as honcho does (a line may name a
        file there: `-c gunicorn.conf.py`), except beat, run in the stack's temp dir so that
        its schedule file (celerybeat-schedule, in the working directory) lands there.
        """
        from bench import procfile

        label = label or name
        port = port or (self.web_port if name == "web" and app is None else free_port())
        env = self.env()
        env["PORT"] = str(port)
        if name == "flower":
            # The Procfile's flower line reads its port from FLOWER_PORT (operations/flower.py).
            env["FLOWER_PORT"] = str(port)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        line = procfile.command(name, port=port if name != "web" else None, app=app)
        reads = {"worker": "brpop", "outbox": "xreadgroup"}.get(name)
        readers = self._clients_running(reads) if reads else 0
        cwd = self.tmp if name == "beat" else REPO
        proc = self._spawn(label, procfile.argv(line), env, cwd=cwd)
        proc.line, proc.port = line, port
        if name == "web":
            self._wait_healthy(proc, port)
        elif reads:
            self._wait_command(proc, reads, 120.0, above=readers)
        elif name == "flower":
            wait_port(port, 30.0)
        return proc

    def _wait_healthy(self, proc: Proc, port: int, timeout: float = 60.0) -> None:
        """Wait until GET /healthz answers below 500 (the port opens before workers boot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: see {proc.log}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} not healthy after {timeout} s: see {proc.log}")

    def _clients_running(self, cmd: str) -> int:
        """Count the private Redis' clients whose last command is `cmd`."""
        return sum(c.get("cmd") == cmd for c in self.redis().client_list())

    def _wait_command(self, proc: Proc, cmd: str, timeout: float, above: int = 0) -> None:
        """Wait until more than `above` clients of the private Redis run `cmd` (a blocking
        read): the new process consumes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: see {proc.log}")
            if self._clients_running(cmd) > above:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} not reading after {timeout} s: see {proc.log}")

    def start_worker(self, pool: str = "threads", concurrency: int = 8) -> Proc:
        """Start a Celery worker on all three queues and wait until it says it is ready."""
        proc = self._spawn(
            "worker",
            [
                tool("celery"),
                "-A",
                "alfred.celery_app",
                "worker",
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-Q",
                "ingest,outbound,alfred",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",  # INFO would log every task: a cost the bench would measure
                "-n",
                f"bench-{uuid.uuid4().hex[:6]}@%h",
            ],
        )
        self._wait_consuming(proc, 60.0)
        return proc

    def start_beat(self) -> Proc:
        """Start Celery beat (its schedule file in the stack's temp dir)."""
        # As the Procfile: beat's own app (no task modules) started without the `celery` CLI.
        return self._spawn(
            "beat",
            [
                sys.executable,
                "-m",
                "alfred.beat_app",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.tmp / "beat-schedule"),
            ],
        )

    def _wait_consuming(self, proc: Proc, timeout: float) -> None:
        """Wait until some client blocks in BRPOP on the broker: the worker consumes."""
        client = self.redis()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: see {proc.log}")
            if any(c.get("cmd") == "brpop" for c in client.client_list()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} not ready after {timeout} s: see {proc.log}")

    def start_base(self) -> None:
        """Start what every measurement needs: Redis, the database, the simulator."""
        self.start_redis()
        self.create_database()
        self.apply_to_this_process()
        self.start_simulator()

    def redis(self):
        """Return a client of the private Redis."""
        import redis

        return redis.Redis.from_url(self.redis_url)

    def flush_redis(self) -> None:
        """Forget every key: queued tasks, journals, streams, dedupe and rate-limit keys."""
        self.redis().flushall()

    def seed_windows(self, recipients: list[str]) -> None:
        """Open the 24-hour window of every recipient for both tenants, as an inbound would:
        a row in the database and its copy in Redis."""
        from sqlalchemy import delete

        from alfred.db import get_engine
        from alfred.models import CustomerWindow

        now = datetime.now(UTC)
        rows = [
            {
                "tenant_id": tenant,
                "user_key": "".join(ch for ch in r if ch.isdigit()),
                "last_inbound_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for tenant in TENANTS
            for r in recipients
        ]
        with get_engine(self.database_url).begin() as connection:
            connection.execute(delete(CustomerWindow.__table__))
            for start in range(0, len(rows), 1000):
                connection.execute(CustomerWindow.__table__.insert(), rows[start : start + 1000])
        # Ingest also keeps a Redis copy of each window, where the sender looks first.
        from alfred.windows import remember_open

        pipe = self.redis().pipeline(transaction=False)
        for row in rows:
            remember_open(pipe, row["tenant_id"], row["user_key"], now.timestamp())
        pipe.execute()

    def close(self) -> None:
        """Stop every process (web first, Redis last), drop the database, remove temp files."""
        for name in ("locust", "web", "reference", "flower", "outbox", "beat", "worker"):
            self.stop(name)
        for name in list(self.procs):
            if name != "redis":
                self.stop(name)
        self.stop("redis")
        try:
            self.drop_database()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def raise_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks stop the stack on kill too."""

    def handler(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
