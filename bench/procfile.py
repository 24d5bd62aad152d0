"""Run the Procfile's own command lines, as honcho does: `/bin/sh -c LINE` with PORT set.

The bench and the load test start web, worker, beat, outbox and flower from these lines, so
what they measure is what `make run`, Heroku-style hosts and fly.toml (the same commands)
ship. Three things differ from a deployment, each for the bench's own sake and said here:
- PATH starts with the repo's .venv/bin, so `python`, `celery` and `gunicorn` are the venv's;
- beat runs in a temp dir, where its schedule file goes (the others run in the repo);
- a line that names a fixed port (`--port=5555`) gets a free one instead, so two benches on
  one machine never collide (the option is replaced, nothing else in the line changes);
- a line may have its WSGI app swapped (`wsgi:app` for the no-work reference), the only way
  the reference runs "under the same gunicorn".
"""

from __future__ import annotations

import re
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
_FIXED_PORT = re.compile(r"--port[= ](\d+)")


def read(path: Path = PROCFILE) -> dict[str, str]:
    """Return {process name: command line} of a Procfile (comments and blanks skipped)."""
    lines: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{path}: not a Procfile line: {raw!r}")
        lines[match.group(1)] = match.group(2).strip()
    return lines


def command(name: str, *, port: int | None = None, app: str | None = None) -> str:
    """Return the Procfile's line for `name`, with a fixed port or the WSGI app replaced."""
    lines = read()
    if name not in lines:
        raise KeyError(f"the Procfile has no {name!r} process (it has {', '.join(lines)})")
    line = lines[name]
    if port is not None and _FIXED_PORT.search(line):
        line = _FIXED_PORT.sub(f"--port={port}", line)
    if app is not None:
        if " wsgi:app" not in line:
            raise ValueError(f"the {name!r} line serves no wsgi:app to replace: {line!r}")
        line = line.replace(" wsgi:app", f" {app}", 1)
    return line


def argv(line: str) -> list[str]:
    """Return the argv honcho runs a Procfile line with."""
    return ["/bin/sh", "-c", line]


# Every Procfile process but Flower runs in the 256 MB VM; Flower is measured on top of them.
BUDGETED = tuple(name for name in read() if name != "flower")
