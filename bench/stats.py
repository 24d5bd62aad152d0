"""Percentiles and medians, without numpy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (nearest rank), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values_s: Sequence[float]) -> dict:
    """Return count, p50/p95/p99/max in milliseconds and the share over 1 s."""
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": _round(percentile(ms, 50)),
        "p95_ms": _round(percentile(ms, 95)),
        "p99_ms": _round(percentile(ms, 99)),
        "max_ms": _round(max(ms) if ms else None),
        "over_1s_pct": round(100 * sum(v > 1000 for v in ms) / len(ms), 3) if ms else None,
    }


def median_of(runs: Sequence[dict], key: str) -> float | None:
    """Return the median of one numeric key across repeated runs, ignoring missing values."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return _round(statistics.median(values)) if values else None


def medians(runs: Sequence[dict]) -> dict:
    """Return the median of every numeric key found in the first run."""
    if not runs:
        return {}
    return {k: median_of(runs, k) for k, v in runs[0].items() if isinstance(v, int | float) and k}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)
