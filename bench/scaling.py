"""How cost grows: per-send CPU and memory from 100 sends/s to the peak, 1 and 2 worker processes.

Each worker process is the Procfile's worker line, started once or twice (what `fly scale
count worker=2` does on one machine's worth of cores), beside the shipped web, beat and
outbox. At each offered rate the bench enqueues with send_message.delay for a few seconds;
the peak is the same as fast as possible. CPU is each process group's utime + stime over the
run (bench/shipped.CpuShares), per accepted send; memory is the workers' peak PSS.
"""

from __future__ import annotations

from bench import outbound
from bench.memory import Sampler
from bench.procfile import BUDGETED
from bench.shipped import CpuShares
from bench.stack import Stack

AROUND = tuple(name for name in BUDGETED if name != "worker")


def one_rate(stack: Stack, workers: list[str], rate: int | None, seconds: float) -> dict:
    """Offer `rate` sends/s (None: as fast as possible) for `seconds`; CPU and PSS per send."""
    count = int((rate or 400) * seconds)
    roots = {name: stack.procs[name].pid for name in workers}
    shares = CpuShares(stack)
    with Sampler(roots) as sampler:
        run = outbound.run(stack, f"grow{rate or 'max'}", count, rate, timeout_s=seconds + 120)
    cpu = shares.shares()
    seconds_used = cpu["seconds"]
    percent = cpu["percent_of_one_core"]
    sends = max(1, run["accepted"])
    worker_cpu_s = sum(percent.get(name, 0.0) for name in workers) / 100 * seconds_used
    stack_cpu_s = (
        sum(v for k, v in percent.items() if k in (*workers, *AROUND, "simulator", "redis"))
        / 100
        * seconds_used
    )
    memory = sampler.report()["processes"]
    return {
        "offered_per_s": rate or "max",
        "sends_per_s": run["sends_per_s"],
        "accepted": run["accepted"],
        "lost": run["lost"],
        "pending": run["pending"],
        "duplicates": run["duplicates"],
        "failed": run["failed"],
        "p95_ms": run["enqueue_to_graph"]["p95_ms"],
        "worker_cpu_ms_per_send": round(1000 * worker_cpu_s / sends, 2),
        "stack_cpu_ms_per_send": round(1000 * stack_cpu_s / sends, 2),
        "worker_pss_mb": round(sum(memory[name]["peak_pss_mb"] for name in workers), 1),
        "cpu_percent_of_one_core": percent,
    }


def run(stack: Stack, rates: list[int], seconds: float) -> dict:
    """For 1 then 2 worker processes: each rate, then the peak."""
    for name in AROUND:
        stack.start_procfile(name)
    out: dict = {}
    try:
        for count in (1, 2):
            # What the last phase left queued or journaled would be re-driven by the new
            # workers' start-up sweep: start each phase from an empty Redis (no worker runs).
            stack.flush_redis()
            outbound.seed(stack)
            workers = [f"worker{i}" if i else "worker" for i in range(count)]
            for name in workers:
                proc = stack.start_procfile("worker", label=name)
                proc.name = name
            try:
                out[str(count)] = [one_rate(stack, workers, r, seconds) for r in [*rates, None]]
            finally:
                for name in workers:
                    stack.stop(name)
    finally:
        for name in AROUND:
            stack.stop(name)
    return out


def table(report: dict) -> str:
    """Render one line per worker count and rate."""
    row = "{:>7} {:>8} {:>9} {:>9} {:>11} {:>11} {:>8}  {}".format
    lines = [
        row(
            "workers",
            "offered",
            "sends/s",
            "p95 ms",
            "worker ms",
            "stack ms",
            "PSS MB",
            "lost/pending/dup/failed",
        )
    ]
    for count, steps in report.items():
        for s in steps:
            lines.append(
                row(
                    count,
                    s["offered_per_s"],
                    s["sends_per_s"],
                    s["p95_ms"],
                    s["worker_cpu_ms_per_send"],
                    s["stack_cpu_ms_per_send"],
                    s["worker_pss_mb"],
                    f"{s['lost']}/{s.get('pending', 0)}/{s['duplicates']}/{s['failed']}",
                )
            )
    return "\n".join(lines)
