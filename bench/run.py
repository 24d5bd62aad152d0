"""`make bench`: the Procfile's own processes on a private stack, against reference runs.

    python bench/run.py [--quick] [--tenants N] [--db sqlite|postgresql]
    python bench/run.py --only inbound|outbound|memory|scaling     (explorations, below)

By default it prints issue 14's table (bench/shipped.py): inbound and outbound throughput of
the shipped web, worker, beat and outbox, each beside its reference run, and their memory
and p95s under the seed's load. The other sections explore what the Procfile does not ship
(other pools, drains, profiles, a step-up). Writes bench/results/bench-<timestamp>.json.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# Import bench.* from the repo root; never let bench/ shadow the standard library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# --tenants is read before bench.stack builds its tenants from BENCH_TENANTS.
_early = argparse.ArgumentParser(add_help=False)
_early.add_argument("--tenants", type=int)
if (_tenants := _early.parse_known_args()[0].tenants) is not None:
    os.environ["BENCH_TENANTS"] = str(_tenants)

from bench import inbound, outbound, shipped  # noqa: E402
from bench.memory import Sampler  # noqa: E402
from bench.stack import Stack, raise_on_sigterm  # noqa: E402
from bench.stats import median_of, medians  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# Sizes: --quick (about three minutes) and the default (about fifteen). Every loop is bounded.
PLANS = {
    "quick": {
        "repeats": 1,
        "wrk_s": 3,
        "connections": [16, 64],
        "drain": 1000,
        "drain_pools": [("threads", 8)],
        "paced_s": 5,
        "steps": [100, 200, 400, 800],
        "step_s": 4,
        "profile": 300,
        "out_max": 1000,
        "out_paced_s": 6,
        "sustained": (500, 15),  # sends/s offered, seconds: one run per pool
        "drain_sends": 4000,
        "pools": [("threads", 16), ("prefork", 4)],
        "reference_sends": 2000,
        "memory_s": 20,
        # issue 14's table (bench/shipped.py)
        "wrk_connections": 16,
        "sends": 1500,
        "load_s": 30,
        "scaling_rates": [100, 200, 300],
        "scaling_s": 5,
    },
    "full": {
        "repeats": 3,
        "wrk_s": 8,
        "connections": [8, 32, 128],
        "drain": 2000,
        "drain_pools": [("threads", 8), ("prefork", 2)],
        "paced_s": 10,
        "steps": [100, 150, 200, 300, 400, 600, 800, 1000],
        "step_s": 8,
        "profile": 1000,
        "out_max": 2000,
        "out_paced_s": 10,
        "sustained": (500, 60),
        "drain_sends": 10000,
        "pools": [("threads", 16), ("prefork", 4), ("prefork", 6), ("gevent", 64)],
        "reference_sends": 5000,
        "memory_s": 60,
        "wrk_connections": 16,
        "sends": 4000,
        "load_s": 60,
        "scaling_rates": [100, 200, 300, 400],
        "scaling_s": 10,
    },
}
INGEST_POOL = ("threads", 8)


def bench_inbound(stack: Stack, plan: dict, out: dict) -> None:
    """Peak accepted POSTs (ours vs reference), profile, drain rate, paced latencies."""
    wrk, note = inbound.ensure_wrk()
    out["tool_note"] = note
    out["web_setting"] = stack.web_setting()
    out["peak_accept"] = inbound.peak_accept(
        stack, wrk, plan["connections"], plan["wrk_s"], plan["repeats"]
    )
    out["profile"] = _profile(stack, plan["profile"])
    stack.start_web()
    drains = {}
    for pool, concurrency in plan["drain_pools"]:
        runs = [
            inbound.drain(stack, pool, concurrency, plan["drain"], timeout_s=180)
            for _ in range(plan["repeats"])
        ]
        drains[f"{pool} -c {concurrency}"] = {**medians(runs), "runs": runs}
    out["drain"] = drains
    stack.flush_redis()
    stack.start_worker(*INGEST_POOL)
    # Warm up (connection pools, imports, compiled statements): steady state is measured.
    inbound.paced(stack, 50, 3, "warmup")
    at50 = [inbound.paced(stack, 50, plan["paced_s"], "at50") for _ in range(plan["repeats"])]
    out["at_50_per_s"] = {
        "worker": f"{INGEST_POOL[0]} -c {INGEST_POOL[1]}",
        "p50_ms": median_of([r["stream"] for r in at50], "p50_ms"),
        "p95_ms": median_of([r["stream"] for r in at50], "p95_ms"),
        "p99_ms": median_of([r["stream"] for r in at50], "p99_ms"),
        "over_1s_pct": median_of([r["stream"] for r in at50], "over_1s_pct"),
        "runs": at50,
    }
    out["step_up"] = inbound.step_up(stack, plan["steps"], plan["step_s"])
    stack.stop("worker")
    stack.stop("web")


def _profile(stack: Stack, count: int) -> dict:
    from bench.hotpath import profile_paths

    return profile_paths(stack, count)


def bench_outbound(stack: Stack, plan: dict, out: dict) -> None:
    """Sends/s at max rate, latency at 80/s, a drain and its Celery floor per pool; references.

    The max-rate run publishes while the worker consumes, as the orchestrator does, but here
    the publisher shares the two cores with the worker; the drain (queue filled first, then
    the worker started) gives the worker's own rate and its CPU per send. The drain's headline
    is its steady rate (the 10th to the 90th percentile of its sends), the whole run beside it.
    Two no-work references: the Celery floor (the same drain with tasks that do next to
    nothing: what Celery itself costs a task on this pool) and the simulator's raw capacity.
    """
    outbound.seed(stack)
    from bench.hotpath import profile_send

    out["profile"] = profile_send(stack, plan["profile"])
    stack.start_web()  # the bridge's own webhook, should anything call back
    pools = {}
    for pool, concurrency in plan["pools"]:
        if pool == "gevent" and not _importable("gevent"):
            pools[pool] = {"skipped": "gevent is not installed"}
            continue
        stack.flush_redis()
        outbound.seed(stack)  # the windows' Redis copies went with the flush
        stack.start_worker(pool, concurrency)
        try:
            maxed = [
                outbound.run(stack, f"max{pool}", plan["out_max"], None, timeout_s=120)
                for _ in range(plan["repeats"])
            ]
            at80 = [
                outbound.run(stack, f"p80{pool}", int(80 * plan["out_paced_s"]), 80, 60)
                for _ in range(plan["repeats"])
            ]
            # The target itself: 500 sends/s offered for a minute, by a publisher on the same
            # cores, as the orchestrator would offer them. Holding means keeping up: the sends/s
            # achieved equal the rate offered, and the latency stays bounded, not growing.
            rate, seconds = plan["sustained"]
            sustained = outbound.run(
                stack, f"s{rate}{pool}", int(rate * seconds), rate, timeout_s=seconds + 120
            )
        finally:
            stack.stop("worker")
        # A drain of out_max sends lasts a few seconds, mostly warm-up: it gets its own count.
        sends = plan["drain_sends"]
        drained = [
            outbound.drain(stack, pool, concurrency, sends, timeout_s=max(120, sends / 50))
            for _ in range(plan["repeats"])
        ]
        # The Celery floor: the same drain of no-op tasks, so the send's CPU has its reference.
        floors = [
            outbound.celery_floor(stack, pool, concurrency, sends, timeout_s=max(120, sends / 50))
            for _ in range(plan["repeats"])
        ]
        pools[f"{pool} -c {concurrency}"] = {
            "max_rate": {**medians(maxed), **_latency_medians(maxed), "runs": maxed},
            "at_80_per_s": {**medians(at80), **_latency_medians(at80), "runs": at80},
            "sustained": {"rate": rate, "seconds": seconds, **sustained},
            "drain": {**medians(drained), "runs": drained},
            "celery_floor": {**medians(floors), "runs": floors},
        }
    out["pools"] = pools
    refs = [outbound.reference(stack, plan["reference_sends"]) for _ in range(plan["repeats"])]
    out["reference"] = {**medians(refs), "runs": refs}
    stack.stop("web")


def _latency_medians(runs: list[dict]) -> dict:
    parts = [r["enqueue_to_graph"] for r in runs]
    return {f"latency_{k}": median_of(parts, k) for k in ("p50_ms", "p95_ms", "p99_ms")}


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_memory(stack: Stack, plan: dict, out: dict) -> None:
    """Peak PSS/RSS of web, worker (threads), beat and the simulator under 50 msg/s each way."""
    # The statuses (sent, delivered, read) ride along here, as under Meta.
    stack.stop("simulator")
    stack.simulator_env.pop("SIMULATOR_STATUS_FLOW", None)
    stack.start_simulator()
    outbound.seed(stack)
    web = stack.start_web()
    worker = stack.start_worker(*INGEST_POOL)
    beat = stack.start_beat()
    roots = {"web": web.pid, "worker": worker.pid, "beat": beat.pid}
    roots["simulator"] = stack.procs["simulator"].pid
    roots["redis"] = stack.procs["redis"].pid
    seconds = plan["memory_s"]
    result: dict = {}
    with Sampler(roots) as sampler:
        sender = threading.Thread(
            target=lambda: result.update(
                inbound=inbound.paced(stack, 50, seconds, "mem").get("stream")
            ),
            daemon=True,
        )
        sender.start()
        result["outbound"] = outbound.run(stack, "mem", 50 * seconds, 50, timeout_s=60)
        sender.join(seconds + 60)
    out.update(sampler.report())
    out["load"] = {"inbound_per_s": 50, "outbound_per_s": 50, "seconds": seconds, **result}
    out["worker"] = f"{INGEST_POOL[0]} -c {INGEST_POOL[1]}"
    for name in ("beat", "worker", "web"):
        stack.stop(name)


def bench_shipped(stack: Stack, plan: dict, out: dict) -> None:
    """Issue 14's table: the Procfile's processes and their reference runs (bench/shipped.py)."""
    wrk, note = inbound.ensure_wrk()
    if wrk is None:
        raise RuntimeError(note)
    out.update(
        shipped.run(
            stack,
            wrk,
            {
                "repeats": plan["table_repeats"],
                "connections": plan["wrk_connections"],
                "wrk_s": plan["wrk_s"],
                "sends": plan["sends"],
                "load_s": plan["load_s"],
                "parts": plan.get("parts"),
            },
        )
    )


def bench_scaling(stack: Stack, plan: dict, out: dict) -> None:
    """Per-send CPU and memory from 100 sends/s to the peak, 1 and 2 workers (bench/scaling.py)."""
    from bench import scaling

    stack.flush_redis()
    out["steps"] = scaling.run(stack, plan["scaling_rates"], plan["scaling_s"])


def table(report: dict) -> str:
    """Render the headline figures beside their targets."""
    if "scaling" in report:
        from bench import scaling

        rest = {k: v for k, v in report.items() if k != "scaling"}
        text = "per-send cost as load grows (scaling):\n" + scaling.table(
            report["scaling"]["steps"]
        )
        if not any(k in rest for k in ("shipped", "inbound", "outbound", "memory")):
            return text
        return table(rest) + "\n\n" + text
    if "shipped" in report:
        text = shipped.table(report)
        rest = {k: v for k, v in report.items() if k != "shipped"}
        if not any(k in rest for k in ("inbound", "outbound", "memory")):
            return text
        return text + "\n\n" + table(rest)
    lines = [f"alfred bench {report['started']}  plan={report['plan']}  db={report['db']}"]
    row = "{:<48} {:>14} {:>22}".format
    lines.append(row("measure", "value", "target"))
    ib = report.get("inbound")
    if ib:
        pa = ib["peak_accept"]
        lines += [
            row(f"POST /webhook accepted/s ({pa['tool']})", pa["ours_peak_ok_per_s"], ">= 1000"),
            row("no-work reference accepted/s", pa["reference_peak_ok_per_s"], ""),
            row("ours / reference", pa["ratio"], ">= 0.5"),
        ]
        for name, d in ib["drain"].items():
            lines.append(
                row(f"drain to alfred-ingest/s ({name})", d["deliveries_per_s"], ">= 1000")
            )
        at50 = ib["at_50_per_s"]
        lines += [
            row("webhook->stream p50 ms at 50/s", at50["p50_ms"], "<= 250 (Meta median)"),
            row("webhook->stream p95 ms at 50/s", at50["p95_ms"], "<= 100"),
            row("webhook->stream p99 ms at 50/s", at50["p99_ms"], ""),
            row("share over 1 s at 50/s (%)", at50["over_1s_pct"], "< 1 (Meta)"),
        ]
        best = ib["step_up"]["highest_holding"]
        if best:
            s = best["stream"]
            lines.append(
                row(
                    f"highest rate that holds: {best['rate']}/s",
                    f"p50 {s['p50_ms']} p95 {s['p95_ms']} p99 {s['p99_ms']}",
                    "p95 <= 1000",
                )
            )
        else:
            lines.append(row("highest rate that holds", "none of the steps", ""))
        prof = ib["profile"]
        lines.append(
            row(
                "profiled ms/POST | ms/process_delivery",
                f"{prof['webhook']['ms_per_request']} | "
                f"{prof['process_delivery']['ms_per_delivery']}",
                "",
            )
        )
    ob = report.get("outbound")
    if ob:
        for name, p in ob["pools"].items():
            if "skipped" in p:
                lines.append(row(f"outbound {name}", "skipped", p["skipped"]))
                continue
            m, a = p["max_rate"], p["at_80_per_s"]
            lines += [
                row(f"sends/s max rate ({name})", m["sends_per_s"], ">= 500"),
                row(
                    "  enqueue->Graph p50/p95 ms at 80/s",
                    f"{a['latency_p50_ms']}/{a['latency_p95_ms']}",
                    "p95 <= 250",
                ),
                row(
                    "  duplicates / lost / failed / errors",
                    f"{_losses(m)} | {_losses(a)}",
                    "0 dup, 0 lost",
                ),
            ]
            su = p.get("sustained")
            if su:
                lat = su["enqueue_to_graph"]
                lines += [
                    row(
                        f"  sustained {su['rate']}/s for {su['seconds']} s: sends/s",
                        su["sends_per_s"],
                        f">= {0.98 * su['rate']:g}",
                    ),
                    row(
                        "    enqueue->Graph p50/p95/max ms",
                        f"{lat['p50_ms']}/{lat['p95_ms']}/{lat['max_ms']}",
                        "bounded",
                    ),
                    row("    duplicates / lost / failed / errors", _losses(su), "0 dup, 0 lost"),
                ]
            d = p["drain"]
            steady_cpu = (
                d.get("steady_worker_cpu_ms_per_send"),
                d.get("steady_simulator_cpu_ms_per_send"),
            )
            lines += [
                row(f"drain sends/s ({name})", d.get("steady_sends_per_s"), ">= 500"),
                row("  drain whole run sends/s", d["sends_per_s"], ""),
                row(
                    "  worker CPU ms/send (drain steady | whole)",
                    f"{steady_cpu[0]} | {d['worker_cpu_ms_per_send']}",
                    "",
                ),
                row(
                    "  simulator CPU ms/send (drain steady | whole)",
                    f"{steady_cpu[1]} | {d['simulator_cpu_ms_per_send']}",
                    "",
                ),
                row("  drain duplicates / lost / failed / errors", _losses(d), "0 dup, 0 lost"),
            ]
            floor = p.get("celery_floor")
            if floor:
                lines += [
                    row(f"celery no-op tasks/s ({name})", floor["tasks_per_s"], "reference"),
                    row("  worker CPU ms/task (no-op)", floor["worker_cpu_ms_per_task"], ""),
                    row(
                        "  send ÷ no-op (worker CPU)",
                        _ratio(steady_cpu[0], floor["worker_cpu_ms_per_task"]),
                        "",
                    ),
                ]
        ref = ob["reference"]
        lines.append(
            row(
                "simulator raw answered/s | accepted/s",
                f"{ref['answered_per_s']} | {ref['accepted_per_s']}",
                "reference",
            )
        )
    mem = report.get("memory")
    if mem:
        for name, p in mem["processes"].items():
            lines.append(
                row(
                    f"peak PSS / RSS MB: {name} ({p['processes']} procs)",
                    f"{p['peak_pss_mb']} / {p['peak_rss_mb']}",
                    "",
                )
            )
        lines.append(
            row(f"peak PSS {'+'.join(mem['budgeted'])} MB", mem["peak_budget_pss_mb"], "<= 256")
        )
    return "\n".join(lines)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator to two places, or None when either is missing or 0."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def _losses(run: dict) -> str:
    return f"{run['duplicates']}/{run['lost']}/{run['failed']}/{run['graph_errors']}"


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the chosen sections on a private stack, print and save the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about three minutes, one repeat")
    parser.add_argument(
        "--only", choices=["shipped", "inbound", "outbound", "memory", "scaling"], action="append"
    )
    parser.add_argument("--tenants", type=int, default=2, help="bench tenants (2, 20, 200)")
    parser.add_argument("--repeats", type=int, help="repeats of the table's measures")
    parser.add_argument(
        "--part",
        choices=["inbound", "outbound", "load"],
        action="append",
        help="only these rows of the table (default: all)",
    )
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    args = parser.parse_args(argv)
    plan_name = "quick" if args.quick else "full"
    plan = PLANS[plan_name]
    plan = {**plan, "table_repeats": args.repeats or (3 if args.quick else 5), "parts": args.part}
    sections = args.only or ["shipped"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / f"logs-{stamp}"
    report: dict = {
        "started": stamp,
        "plan": plan_name,
        "db": args.db,
        "sections": sections,
        "tenants": args.tenants,
        "repeats": plan["table_repeats"],
    }
    raise_on_sigterm()
    stack = Stack(
        db=args.db,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        # Outbound is measured without status callbacks; the memory section turns them on.
        simulator_env={"SIMULATOR_STATUS_FLOW": ""},
        logs_dir=logs,
    )
    started = time.monotonic()
    try:
        stack.start_base()
        report["web_setting"] = stack.web_setting()
        for section in sections:
            print(f"[bench] {section} ...", flush=True)
            out: dict = {}
            report[section] = out
            runner = {
                "shipped": bench_shipped,
                "inbound": bench_inbound,
                "outbound": bench_outbound,
                "memory": bench_memory,
                "scaling": bench_scaling,
            }[section]
            runner(stack, plan, out)
    except KeyboardInterrupt:
        report["interrupted"] = True
        print("[bench] interrupted: stopping the stack", flush=True)
    finally:
        stack.close()
        report["seconds"] = round(time.monotonic() - started, 1)
        path = RESULTS / f"bench-{stamp}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
    try:
        print(table(report))
    except (KeyError, TypeError) as exc:  # a section cut short: the JSON still has the rest
        print(f"[bench] no table for an incomplete report ({exc!r})")
    print(f"[bench] full results: {path} (process logs: {logs})")
    return 1 if report.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
