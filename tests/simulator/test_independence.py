"""The simulator shares no code with the bridge's validation or send path (import-linter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_the_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imports nothing from the bridge's validation or send path KEPT" in result.stdout


def test_the_contract_catches_the_simulator_reusing_the_bridges_validator(tmp_path):
    shutil.copytree(
        ROOT / "alfred", tmp_path / "alfred", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    errors = tmp_path / "alfred" / "simulator" / "errors.py"
    errors.write_text(
        errors.read_text() + "\nfrom alfred.whatsapp.messages import validate_message\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "alfred.whatsapp.messages" in result.stdout
