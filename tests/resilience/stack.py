"""The stack as several machines would run it: the Procfile's lines, each process started twice.

Each process runs exactly the command its Procfile line names (the web's gunicorn part, the
worker with --outbox, beat), in its own process group, its output in a log file of its own.
An `orchestrator` subprocess plays Alfred's side: send_message.delay and «alfred-outbox».
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from alfred.config import REPO_ROOT
from tests.conftest import free_port
from tests.processes import wait_until_ready


def procfile_argv(name: str) -> list[str]:
    """Return the Procfile's command for `name`, run with this interpreter (its last part)."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            command = line.split(":", 1)[1].split("&&")[-1]
            argv = shlex.split(command)
            if argv[0] == "python":
                return [sys.executable, *argv[1:]]
            return [sys.executable, "-m", *argv]
    raise LookupError(f"the Procfile has no {name} line")


class Machines:
    """Start the Procfile's processes, any number of each; SIGKILL them all at the end."""

    def __init__(self, env: dict, logs: Path):
        # METRICS_PORT=0: no exporter; the processes of one test are not one Fly machine.
        self.env = {**env, "METRICS_PORT": "0"}
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, argv: list[str], extra_env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**self.env, **(extra_env or {})},
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def web(self, name: str, extra_env: dict | None = None) -> str:
        """Start gunicorn as the Procfile's web line does, on a free port; return its URL."""
        port = free_port()
        argv = [arg.replace("0.0.0.0:$PORT", f"127.0.0.1:{port}") for arg in procfile_argv("web")]
        process = self._start(name, argv, extra_env)
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/healthz", process)
        return url

    def worker(self, name: str, extra_env: dict | None = None) -> subprocess.Popen:
        """Start the Procfile's worker line (threads, --outbox: an outbox bridge inside)."""
        return self._start(name, [*procfile_argv("worker"), "-l", "WARNING"], extra_env)

    def beat(self, name: str, extra_env: dict | None = None) -> subprocess.Popen:
        """Start the Procfile's beat line with a schedule file of its own, as a machine has."""
        schedule = self.logs / f"{name}-schedule"
        return self._start(name, [*procfile_argv("beat"), "--schedule", str(schedule)], extra_env)

    def orchestrator(
        self, name: str, tag: str, count: int, rate_per_s: float, users: list[str]
    ) -> subprocess.Popen:
        """Send `count` messages as Alfred would, half by send_message.delay, half by the outbox."""
        argv = [
            sys.executable, "-m", "tests.resilience.orchestrator", "--tag", tag,
            "--count", str(count), "--rate", str(rate_per_s), "--users", ",".join(users),
        ]  # fmt: skip
        return self._start(name, argv)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def log_lines(self, name: str) -> list[dict]:
        """The JSON lines of a process's log (other lines skipped)."""
        found = []
        for line in (self.logs / f"{name}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def kill(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            try:
                self.kill(name)
            except ProcessLookupError:
                continue
