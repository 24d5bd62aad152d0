"""Start-up faults give one clear line naming the fix, never a traceback that stops the stack."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from alfred.config import REPO_ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
BAD_TENANTS = '{"home": '


def _run(command: list[str], env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_make_run_names_a_taken_port_and_the_variable_that_moves_it(env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = _run(
            ["bash", "scripts/run-stack.sh"],
            {
                "FLOWER_PORT": str(taken),
                "PORT": str(free_port()),
                "SIMULATOR_PORT": str(free_port()),
                "ALFRED_TENANTS": "",
            },
        )
    assert done.returncode == 1
    assert f"port {taken} (flower) is already in use" in done.stderr
    assert "FLOWER_PORT=<free port> make run" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app", "--bind", "PORT"],
        [sys.executable, "-m", "celery", "-A", "alfred.celery_app", "worker", "-P", "threads"],
        [sys.executable, "-m", "alfred", "db", "upgrade"],
    ],
    ids=["web", "worker", "cli"],
)
def test_a_malformed_alfred_tenants_stops_a_process_in_one_line(env, command):
    command = [f"127.0.0.1:{free_port()}" if part == "PORT" else part for part in command]
    done = _run(command, {"ALFRED_TENANTS": BAD_TENANTS})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: configuration: ALFRED_TENANTS is not valid JSON")
    assert "set it to a JSON object such as" in line


def test_an_unreachable_database_is_one_line_naming_database_url(env):
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    done = _run([sys.executable, "-m", "alfred", "db", "upgrade"], {"DATABASE_URL": url})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "Connection refused" in line and "point DATABASE_URL at one that answers" in line
