"""`make load`: the seed's load test with Locust on a private stack, judged against two bars.

    python bench/load.py --rate 50 --duration 300     (bench/load.sh reads RATE, DURATION)

RATE signed webhooks/s in and RATE send_message/s out, with the simulator's status callbacks
(sent, delivered, read) riding along into our webhook. Writes bench/results/load-<ts>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

# Import bench.* from the repo root; never let bench/ shadow the standard library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import accounting, inbound, outbound, shipped  # noqa: E402
from bench.memory import Sampler  # noqa: E402
from bench.procfile import BUDGETED  # noqa: E402
from bench.stack import Stack, raise_on_sigterm, tool  # noqa: E402
from bench.stats import summary_ms  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED_BAR = {"error_pct": 1.0, "p95_ms": 2000}
TARGET = {"error_pct": 0.0, "p95_ms": 200}


def seconds(text: str) -> int:
    """Read a duration: 300, 300s, 5m or 1h."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def locust_rows(prefix: Path) -> dict[str, dict]:
    """Read Locust's stats CSV: count, failures and percentiles per request name."""
    rows = {}
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as handle:
        for row in csv.DictReader(handle):
            count = int(row["Request Count"])
            failures = int(row["Failure Count"])
            rows[row["Name"]] = {
                "requests": count,
                "failures": failures,
                "error_pct": round(100 * failures / count, 3) if count else None,
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
                "per_s": float(row["Requests/s"]),
            }
    return rows


def run_locust(
    stack: Stack, rate: int, duration: int, tag: str, cpu: dict
) -> tuple[dict, dict[str, list[float]]]:
    """Run Locust headless against the stack; return its stats and, per send, [call, return].

    `cpu` gets where the cores went while Locust ran (% of one core per process group, the
    machine's other users, Locust itself): Locust's gevent loop shares the cores with the
    stack, and its own waits count in the send latency it stamps.
    """
    shares = shipped.CpuShares(stack)
    before = os.times()
    prefix = stack.tmp / "locust"
    keys = stack.tmp / "enqueued.json"
    env = stack.env()
    env.update({"BENCH_LOAD_TAG": tag, "BENCH_LOAD_RATE": str(rate), "BENCH_LOAD_KEYS": str(keys)})
    users = 2 * rate
    argv = [
        tool("locust"),
        "-f",
        str(Path(__file__).with_name("locustfile.py")),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "--stop-timeout",
        "5",
        "--host",
        stack.web_url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    proc = stack._spawn("locust", argv, env)
    try:
        proc.popen.wait(duration + 120)
    except subprocess.TimeoutExpired:
        stack.stop("locust")
        raise
    # Locust has exited and been waited for: its CPU is in this process's children's times.
    after = os.times()
    locust_s = (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )
    cpu.update(shares.shares(extra={"locust": locust_s}))
    stack.procs.pop("locust", None)
    times = json.loads(keys.read_text()) if keys.exists() else {}
    return locust_rows(prefix), times


def end_to_end(
    stack: Stack, tag: str, inbound_ok: int, times: dict[str, list[float]], drain_timeout_s: float
) -> dict:
    """Wait (bounded) for the stack to drain what the load left, then count both directions.

    What is still queued or journaled when Locust stops is a backlog, not a loss: the wait
    lasts until the Celery queues, the journals, the ready lists and the simulator's status
    callbacks are all empty, or nothing has moved for a minute, or `drain_timeout_s` passed.
    Then bench/accounting.py counts every send and delivery, reading the queues and journals
    before the outcomes, so a send still draining is "pending" and only a send in none of
    them is "lost".
    """
    client = stack.redis()
    at_stop = accounting.backlog(client)

    def progress() -> tuple:
        stats = outbound.sim_stats(stack)
        return (stats["sends"]["accepted"], stats["webhooks"]["delivered"],
                int(client.xlen(inbound.INGEST_STREAM)))  # fmt: skip

    def statuses_due() -> int:
        webhooks = outbound.sim_stats(stack)["webhooks"]
        return webhooks["scheduled_statuses"] + webhooks["deliveries_in_flight"]

    drain = accounting.wait_drained(
        client, progress, timeout_s=drain_timeout_s, extra_busy=statuses_due
    )
    enqueued = {key: when[0] for key, when in times.items()}
    sends = outbound.ledger(stack, f"{tag}-", enqueued)
    accepted = sends.pop("accepted_at")
    delivered = accounting.deliveries(
        client,
        f"wamid.{tag}.",
        inbound_ok,
        lambda: [w for w, _ in inbound.stream_entries(client, "0-0", f"wamid.{tag}.")],
    )
    found = inbound.entries_after(client, "0-0", f"wamid.{tag}.")
    statuses = sum(
        1
        for _id, fields in client.xrange(inbound.INGEST_STREAM, count=10**7)
        if json.loads(fields[b"payload"]).get("event") == "status"
    )
    stats = outbound.sim_stats(stack)
    send_lat = [accepted[k] - t for k, t in enqueued.items() if k in accepted]
    # From the moment apply_async returned (the task in Redis): the bridge's own share.
    published_lat = [accepted[k] - w[1] for k, w in times.items() if k in accepted]
    return {
        "backlog_when_locust_stopped": at_stop,
        "drain": drain,
        "inbound": {
            **delivered,
            "webhook_to_stream": summary_ms([max(0.0, e - r) for r, e in found]),
        },
        "outbound": {
            **sends,
            "accepted_by_simulator": sends["sent"],
            "graph_errors": stats["sends"]["rejected_total"],
            "enqueue_to_graph": summary_ms(send_lat),
            "published_to_graph": summary_ms([max(0.0, x) for x in published_lat]),
        },
        "statuses": {
            "sent_by_simulator": stats["webhooks"]["statuses"],
            "webhook_posts": stats["webhooks"]["delivered"],
            "non_2xx": stats["webhooks"]["non_2xx"],
            "failed_deliveries": stats["webhooks"]["failed"],
            "status_events_in_stream": statuses,
        },
    }


def verdict(report: dict) -> dict:
    """Judge errors and the worst p95 against the seed's bar and our target."""
    rows = report["locust"]
    requests_ = sum(r["requests"] for r in rows.values() if r is not rows.get("Aggregated"))
    failures = sum(r["failures"] for n, r in rows.items() if n != "Aggregated")
    e2e = report["end_to_end"]
    # A send or delivery still pending when the bounded drain ended is not lost, but the run
    # did not keep up: it counts against the run as an error too.
    lost = (
        e2e["inbound"]["lost"] + e2e["inbound"]["pending"]
        + e2e["outbound"]["lost"] + e2e["outbound"]["pending"] + e2e["outbound"]["failed"]
    )  # fmt: skip
    error_pct = round(100 * (failures + lost) / max(1, requests_), 3)
    p95s = {
        "webhook POST (Locust)": rows.get("POST /webhook", {}).get("p95_ms"),
        "send_message enqueue (Locust)": rows.get("send_message.apply_async", {}).get("p95_ms"),
        "webhook -> alfred-ingest": e2e["inbound"]["webhook_to_stream"]["p95_ms"],
        "enqueue -> Graph call": e2e["outbound"]["enqueue_to_graph"]["p95_ms"],
    }
    # Not judged: the same sends timed from when Locust's apply_async returned (the bridge's
    # share, without Locust's own wait for CPU), shown beside.
    published = e2e["outbound"].get("published_to_graph", {}).get("p95_ms")
    worst = max(v for v in p95s.values() if v is not None)
    return {
        "error_pct": error_pct,
        "p95_ms": p95s,
        "published_to_graph_p95_ms": published,
        "worst_p95_ms": worst,
        "seed_bar_met": error_pct <= SEED_BAR["error_pct"] and worst < SEED_BAR["p95_ms"],
        "target_met": error_pct <= TARGET["error_pct"] and worst < TARGET["p95_ms"],
        "seed_bar": SEED_BAR,
        "target": TARGET,
    }


def render(report: dict) -> str:
    """Render the verdict and the headline figures."""
    v, e2e, mem = report["verdict"], report["end_to_end"], report["memory"]
    lines = [
        f"alfred load {report['started']}: {report['rate']}/s in + {report['rate']}/s out "
        f"for {report['duration_s']} s, the Procfile's {', '.join(report.get('lines', {}))}",
        f"load average (1/5/15 min) at start {report.get('loadavg_start')}, "
        f"at end {report.get('loadavg_end')} (shared machine: noisy)",
        f"errors: {v['error_pct']} %  (seed bar <= 1 %, target 0 %)",
    ]
    for name, p95 in v["p95_ms"].items():
        lines.append(f"p95 {name}: {p95} ms  (seed bar < 2000, target < 200)")
    lines.append(
        f"  (the same sends from when apply_async returned, the task in Redis: p95 "
        f"{v.get('published_to_graph_p95_ms')} ms; the rest is Locust's own wait for CPU)"
    )
    stop, drain = e2e["backlog_when_locust_stopped"], e2e["drain"]
    ib, ob = e2e["inbound"], e2e["outbound"]
    lines += [
        f"backlog when Locust stopped: queues {stop['queues']}, journals {stop['journals']}; "
        f"drained {drain['drained']} after {drain['waited_s']} s"
        + ("" if drain["drained"] else f" (left: {drain['backlog_at_end']})"),
        f"inbound: {ib['accepted_by_web']} accepted, {ib['reached_stream']} in the stream, "
        f"{ib['pending']} pending (journaled), {ib['lost']} lost, {ib['duplicates']} duplicates",
        f"outbound: {ob['enqueued']} enqueued, {ob['sent']} sent, {ob['failed']} failed, "
        f"{ob['pending']} pending ({ob['pending_queued']} queued, {ob['pending_in_worker']} "
        f"in the worker), {ob['lost']} lost, {ob['duplicates']} duplicates",
        f"statuses: {e2e['statuses']['sent_by_simulator']} sent back, "
        f"{e2e['statuses']['status_events_in_stream']} in alfred-ingest, "
        f"{e2e['statuses']['non_2xx']} non-2xx",
        f"peak PSS {'+'.join(mem['budgeted'])}: {mem['peak_budget_pss_mb']} MB (target <= 256), "
        f"{mem['peak_budget_plus_flower_pss_mb']} MB with flower",
        "CPU while Locust ran, % of one core (of "
        f"{100 * report.get('cpu_during_load', {}).get('cores', 0)}): "
        + ", ".join(
            f"{k} {x}"
            for k, x in report.get("cpu_during_load", {}).get("percent_of_one_core", {}).items()
        ),
        f"seed bar met: {v['seed_bar_met']}   target met: {v['target_met']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start the stack, run Locust, wait for the tail, judge, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="messages/s each way")
    parser.add_argument("--duration", default="300", help="seconds, or 5m")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="seconds to wait at most for the backlog to drain after Locust stops",
    )
    args = parser.parse_args(argv)
    duration = seconds(args.duration)
    if not 1 <= args.rate <= 1000 or not 5 <= duration <= 3600:
        parser.error("rate must be 1..1000 and duration 5 s..1 h")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / f"logs-load-{stamp}"
    report: dict = {"started": stamp, "rate": args.rate, "duration_s": duration, "db": args.db}
    raise_on_sigterm()
    stack = Stack(db=args.db, logs_dir=logs)
    tag = f"load{stamp}"
    try:
        stack.start_base()
        outbound.seed(stack)
        # The Procfile's own lines (bench/procfile.py), Flower included and measured on top.
        shipped.start(stack)
        stack.start_procfile("flower")
        report["lines"] = {name: proc.line for name, proc in stack.procs.items() if proc.line}
        report["web_setting"] = report["lines"]["web"]
        report["worker"] = report["lines"]["worker"]
        roots = {name: stack.procs[name].pid for name in (*BUDGETED, "flower")}
        roots["simulator"] = stack.procs["simulator"].pid
        roots["redis"] = stack.procs["redis"].pid
        report["loadavg_start"] = shipped.loadavg()
        print(f"[load] {args.rate}/s each way for {duration} s against {stack.web_url}", flush=True)
        with Sampler(roots) as sampler:
            cpu: dict = {}
            rows, times = run_locust(stack, args.rate, duration, tag, cpu)
            report["cpu_during_load"] = cpu
            report["locust"] = rows
            inbound_ok = rows["POST /webhook"]["requests"] - rows["POST /webhook"]["failures"]
            report["end_to_end"] = end_to_end(stack, tag, inbound_ok, times, args.drain_timeout)
        report["memory"] = sampler.report()
        report["loadavg_end"] = shipped.loadavg()
        report["verdict"] = verdict(report)
    except KeyboardInterrupt:
        report["interrupted"] = True
        print("[load] interrupted: stopping the stack", flush=True)
    finally:
        stack.close()
        path = RESULTS / f"load-{stamp}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
    if "verdict" in report:
        print(render(report))
    print(f"[load] full results: {path} (process logs: {logs})")
    return 0 if report.get("verdict", {}).get("seed_bar_met") else 1


if __name__ == "__main__":
    sys.exit(main())
