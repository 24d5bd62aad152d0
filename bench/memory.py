"""Peak PSS and RSS of each process tree of the stack, sampled from /proc/<pid>/smaps_rollup."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.procfile import BUDGETED
from bench.sampling import Ticker, proc_stats

# honcho's (and the bench's) `sh -c` wrapper: not part of what a VM runs, so not counted.
WRAPPERS = ("sh", "dash", "bash")


def is_wrapper(pid: int) -> bool:
    """Say whether `pid` is a shell that only waits for a Procfile line's command."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip() in WRAPPERS
    return False


def children(pid: int) -> list[int]:
    """Return every descendant of `pid` (gunicorn workers, prefork children)."""
    parents: dict[int, list[int]] = {}
    for child, fields in proc_stats():
        parents.setdefault(int(fields[1]), []).append(child)
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


class Sampler(Ticker):
    """Sample the named process trees every `interval` seconds on a thread until stopped."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        super().__init__(interval)
        self.roots = roots
        self.peak: dict[str, dict[str, int]] = {
            name: {"pss_kb": 0, "rss_kb": 0, "processes": 0} for name in roots
        }
        self.peak_budget_pss_kb = 0
        self.peak_with_flower_pss_kb = 0
        self.samples = 0

    def tick(self) -> None:
        budget = flower = 0
        for name, root in self.roots.items():
            pids = [p for p in (root, *children(root)) if not is_wrapper(p)]
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
            elif name == "flower":
                flower = pss
        self.peak_budget_pss_kb = max(self.peak_budget_pss_kb, budget)
        self.peak_with_flower_pss_kb = max(self.peak_with_flower_pss_kb, budget + flower)
        self.samples += 1

    def report(self) -> dict:
        """Return peaks in MB per process tree and the peak PSS of the budgeted ones together."""
        return {
            "processes": {
                name: {
                    "peak_pss_mb": round(p["pss_kb"] / 1024, 1),
                    "peak_rss_mb": round(p["rss_kb"] / 1024, 1),
                    "processes": p["processes"],
                }
                for name, p in self.peak.items()
            },
            "budgeted": [name for name in BUDGETED if name in self.roots],
            "peak_budget_pss_mb": round(self.peak_budget_pss_kb / 1024, 1),
            "peak_budget_plus_flower_pss_mb": round(self.peak_with_flower_pss_kb / 1024, 1),
            "target_mb": 256,
            "samples": self.samples,
        }
