"""Peak PSS and RSS of each process tree of the stack, sampled from /proc/<pid>/smaps_rollup."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

# The three processes Fly would run in the 256 MB VM (the simulator and load are not ours).
BUDGETED = ("web", "worker", "beat")


def children(pid: int) -> list[int]:
    """Return every descendant of `pid` (gunicorn workers, prefork children)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rollup(pid: int) -> tuple[int, int]:
    """Return (PSS, RSS) of one process in kB, or (0, 0) if it is gone."""
    pss = rss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss, rss


class Sampler:
    """Sample the named process trees every `interval` seconds on a thread until stopped."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        self.roots = roots
        self.interval = interval
        self.peak: dict[str, dict[str, int]] = {
            name: {"pss_kb": 0, "rss_kb": 0, "processes": 0} for name in roots
        }
        self.peak_budget_pss_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            budget = 0
            for name, root in self.roots.items():
                pids = [root, *children(root)]
                pss = rss = 0
                for pid in pids:
                    p, r = rollup(pid)
                    pss, rss = pss + p, rss + r
                peak = self.peak[name]
                peak["pss_kb"] = max(peak["pss_kb"], pss)
                peak["rss_kb"] = max(peak["rss_kb"], rss)  # shared pages counted per process
                peak["processes"] = max(peak["processes"], len(pids))
                if name in BUDGETED:
                    budget += pss
            self.peak_budget_pss_kb = max(self.peak_budget_pss_kb, budget)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def report(self) -> dict:
        """Return peaks in MB per process tree and the peak of web + worker + beat PSS."""
        return {
            "processes": {
                name: {
                    "peak_pss_mb": round(p["pss_kb"] / 1024, 1),
                    "peak_rss_mb": round(p["rss_kb"] / 1024, 1),
                    "processes": p["processes"],
                }
                for name, p in self.peak.items()
            },
            "peak_web_worker_beat_pss_mb": round(self.peak_budget_pss_kb / 1024, 1),
            "target_mb": 256,
            "samples": self.samples,
        }
