"""What the bench's samplers share: a thread that ticks at an interval, and /proc's stat lines."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path


class Ticker:
    """Call tick() every `interval` s on a thread, from entering `with` to leaving it.

    A tick that returns True ends the sampling early (its result is complete).
    """

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tick(self) -> bool | None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.tick():
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(5)


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Yield (pid, fields) of every live process; fields start after the command name.

    After the ")" closing the command name come state, ppid, pgrp, … (fields 3, 4, 5 … of
    proc(5)), so ppid is item 1, pgrp item 2, utime, stime, cutime, cstime items 11-14. A
    process that exits while being read is skipped.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()


def machine_busy_s() -> float:
    """Return the CPU seconds all cores spent busy since boot (/proc/stat, less idle and iowait)."""
    import os

    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    # guest time is already inside user; steal is not ours to count
    busy = sum(fields[:8]) - idle - (fields[7] if len(fields) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")
