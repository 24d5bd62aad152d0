"""Real processes for tests: the web under gunicorn with the repo's gunicorn.conf.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

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
    extra_env: dict | None = None, *options: str, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """Start the web process as production does (gunicorn.conf.py); return it and its URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            *options,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **(extra_env or {})},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/healthz", process)
    except Exception:
        stop(process)
        raise
    return process, url


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
