"""Fixtures of the operations tests: promtool and amtool, installed by the repo's script."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from alfred.config import REPO_ROOT


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """Give the paths of promtool and amtool, installing them (as root, with apt) if missing."""
    if not (shutil.which("promtool") and shutil.which("amtool")):
        done = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "ensure-ops-tools.sh")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            if shutil.which("apt-get"):
                pytest.fail(f"could not install promtool/amtool: {done.stderr}")
            pytest.skip(
                "SKIPPED LOUDLY: promtool/amtool missing and no apt-get here to install them; "
                f"{done.stderr.strip()}"
            )
    return {"promtool": shutil.which("promtool"), "amtool": shutil.which("amtool")}
