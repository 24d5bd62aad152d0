"""Issue 14's table: the Procfile's own processes, each figure against its reference run.

The stack is the Procfile's budgeted processes (web, worker with the outbox bridge on a
thread, beat), each started from its Procfile line (bench/procfile.py), all running through
every measure, as on the VM; bench/accounting.py counts lost, pending and duplicated. Each
ratio is taken per repeat, ours then the reference within seconds of each other, and the table shows
the median of those ratios beside the medians of both sides: the machine is shared, and a
pair taken together drifts less than two medians taken minutes apart.

- Inbound: wrk POSTs signed deliveries for a few seconds; a delivery counts once it is both
  answered 2xx and in «alfred-ingest» (ingested by the worker), over the time from wrk's
  start to the last entry. The reference is the seed's sketch (bench/reference_app.py, HMAC
  then XADD) served by the Procfile's web line with the app swapped, on its own port.
- Outbound: the bench calls send_message.delay as fast as 4 threads can; the rate is the
  simulator's accepted stamps, first to last. The reference posts the same Graph bodies to
  the same simulator from 4 processes x 8 requests.Sessions, timed the same way.
- Memory and the seed's load: 50 deliveries/s and 50 sends/s at once, with the simulator's
  status callbacks on; peak PSS of the four budgeted processes, Flower (its own Procfile
  line) sampled on top; p95 of webhook -> stream and enqueue -> Graph over the run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import inbound, outbound
from bench.memory import Sampler
from bench.payloads import outbound_message
from bench.procfile import BUDGETED
from bench.procfile import command as stack_line
from bench.sampling import machine_busy_s
from bench.stack import TENANTS, Stack
from bench.stats import median_of

REFERENCE_APP = "bench.reference_app:app"
_DEFAULT_TERM = (signal.SIGTERM, signal.SIG_DFL)


def loadavg() -> list[float]:
    """Return the machine's 1, 5 and 15-minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def start(stack: Stack) -> None:
    """Start the four budgeted Procfile processes (web runs its own `db upgrade` first)."""
    for name in BUDGETED:
        stack.start_procfile(name)


# -- inbound -------------------------------------------------------------------------------


def ours_inbound(stack: Stack, wrk: str, connections: int, seconds: float, tag: str) -> dict:
    """wrk against the shipped web while the shipped worker ingests: accepted and ingested/s."""
    client = stack.redis()
    after = inbound.last_id(client)
    base = int(client.xlen(inbound.INGEST_STREAM))
    bodies = stack.tmp / "bodies.tsv"
    inbound.write_bodies(bodies, tag, int(4000 * seconds) + 1000)
    started = time.time()
    run = inbound.run_wrk(wrk, f"{stack.web_url}/webhook", bodies, connections, seconds)
    accepted = run["requests"] - run["non2xx"]
    deadline = time.monotonic() + 120
    while int(client.xlen(inbound.INGEST_STREAM)) < base + accepted:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    found = inbound.stream_entries(client, after, f"wamid.{tag}.")
    ids = {wamid for wamid, _ in found}
    last = max((t for _, t in found), default=started)
    # wrk counts only the answers it read before its clock stopped; the server may have
    # accepted a few more, which reach the stream: never a negative loss.
    tally = inbound.ledger(client, f"wamid.{tag}.", accepted, after)
    return {
        "accepted": accepted,
        "accepted_per_s": run["ok_per_s"],
        "ingested": len(ids),
        "per_s": round(len(ids) / (last - started), 1) if last > started else None,
        "pending": tally["pending"],
        "lost": tally["lost"],
        "duplicates": tally["duplicates"],
        "non2xx": run["non2xx"],
        "socket_errors": run["socket_errors"],
        "p99_ms": run["p99_ms"],
    }


def reference_inbound(stack: Stack, wrk: str, port: int, connections: int, seconds: float) -> dict:
    """wrk against the no-work reference (HMAC + XADD) under the Procfile's gunicorn line."""
    bodies = stack.tmp / "bodies.tsv"
    inbound.write_bodies(bodies, f"ref{int(time.time() * 1000)}", int(6000 * seconds) + 1000)
    run = inbound.run_wrk(wrk, f"http://127.0.0.1:{port}/webhook", bodies, connections, seconds)
    return {
        "per_s": run["ok_per_s"],
        "non2xx": run["non2xx"],
        "socket_errors": run["socket_errors"],
        "p99_ms": run["p99_ms"],
    }


def measure_inbound(stack: Stack, wrk: str, plan: dict) -> dict:
    """Interleave ours and the reference `repeats` times; return both and their ratios."""
    reference = stack.start_procfile("web", label="reference", app=REFERENCE_APP)
    ours, refs = [], []
    try:
        for repeat in range(plan["repeats"]):
            tag = f"ship{repeat}.{int(time.time() * 1000)}"
            ours.append(ours_inbound(stack, wrk, plan["connections"], plan["wrk_s"], tag))
            refs.append(
                reference_inbound(stack, wrk, reference.port, plan["connections"], plan["wrk_s"])
            )
    finally:
        stack.stop("reference")
    return paired(ours, refs, connections=plan["connections"], seconds=plan["wrk_s"])


def paired(ours: list[dict], refs: list[dict], **about) -> dict:
    """Return medians of both sides and of the per-repeat ratios, with every run."""
    ratios = [
        round(o["per_s"] / r["per_s"], 3) if o.get("per_s") and r.get("per_s") else None
        for o, r in zip(ours, refs, strict=True)
    ]
    known = [x for x in ratios if x is not None]
    return {
        **about,
        "ours_per_s": median_of(ours, "per_s"),
        "reference_per_s": median_of(refs, "per_s"),
        "ratio": round(statistics.median(known), 3) if known else None,
        "ratios": ratios,
        "lost": sum(o.get("lost", 0) for o in ours),
        # Not yet done when the run's bounded wait ended: a backlog, journaled, not lost.
        "pending": sum(o.get("pending", 0) for o in ours),
        "duplicates": sum(o.get("duplicates", 0) for o in ours),
        "reference_lost": sum(r.get("lost", 0) for r in refs),
        "ours": ours,
        "reference": refs,
    }


# -- outbound ------------------------------------------------------------------------------


def graph_body(message: dict) -> dict:
    """Return the Graph request body the bridge posts for a bench text message."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message["to"],
        "type": "text",
        "text": message["text"],
        "biz_opaque_callback_data": message["idempotency_key"],
    }


def _post_share(args: tuple[str, list[tuple[str, str, dict]], int]) -> int:
    """In one reference process: post its share from `sessions` threads, a Session each."""
    _base, items, sessions = args

    def one_session(share: list[tuple[str, str, dict]]) -> int:
        ok = 0
        with requests.Session() as session:
            for url, token, body in share:
                response = session.post(
                    url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
                )
                ok += response.status_code == 200
        return ok

    with ThreadPoolExecutor(sessions) as pool:
        return sum(pool.map(one_session, [items[i::sessions] for i in range(sessions)]))


def reference_outbound(
    stack: Stack, count: int, label: str, processes: int = 4, sessions: int = 8
) -> dict:
    """Bare requests clients (processes x sessions) post the same bodies to the simulator."""
    prefix = f"{label}-{int(time.time() * 1000)}"
    items = []
    for i in range(count):
        message = outbound_message(prefix, i)
        tenant = TENANTS[message["tenant_id"]]
        url = f"{stack.sim_url}/v25.0/{tenant['phone_number_id']}/messages"
        items.append((url, tenant["token"], graph_body(message)))
    shares = [(stack.sim_url, items[p::processes], sessions) for p in range(processes)]
    # fork: the children need nothing but requests and the items, and start in milliseconds.
    # They take SIGTERM's default back: the pool ends them with it, not an interrupt.
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=signal.signal, initargs=_DEFAULT_TERM) as pool:
        ok = sum(pool.map(_post_share, shares))
    # The same count as ours (bench/accounting.py); with no journal, nothing can be pending.
    tally = outbound.ledger(stack, prefix, [body["biz_opaque_callback_data"] for *_, body in items])
    stamps = sorted(tally.pop("accepted_at").values())
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {
        "clients": f"{processes} processes x {sessions} requests.Session",
        "posted": count,
        "answered_200": ok,
        "accepted": tally["sent"],
        "per_s": round((len(stamps) - 1) / span, 1) if span else None,
        "lost": tally["lost"],
        "duplicates": tally["duplicates"],
    }


class CpuShares:
    """CPU seconds of each stack process group, this bench and the whole machine, between two
    snapshots: where the two cores went during a run."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.first = self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        times = os.times()
        snap = {name: outbound.group_cpu_s(p.pid)[0] for name, p in self.stack.procs.items()}
        snap["bench (load generator)"] = times.user + times.system
        snap["_machine"] = machine_busy_s()
        snap["_wall"] = time.monotonic()
        return snap

    def shares(self, extra: dict[str, float] | None = None) -> dict:
        """Return each part's share of the machine's two cores (percent of 200) since start.

        `extra`: CPU seconds of parts that exited meanwhile (a waited child), by name.
        """
        last = self._snapshot()
        wall = last["_wall"] - self.first["_wall"]
        cores = os.cpu_count() or 1
        used = {k: last[k] - self.first.get(k, 0.0) for k in last if not k.startswith("_")}
        used.update(extra or {})
        others = (last["_machine"] - self.first["_machine"]) - sum(used.values())
        used["others (postgres, other users)"] = max(0.0, others)
        out = {k: round(100 * v / wall, 1) for k, v in sorted(used.items(), key=lambda x: -x[1])}
        out["idle"] = round(100 * cores - sum(out.values()), 1)
        return {"percent_of_one_core": out, "cores": cores, "seconds": round(wall, 2)}


def measure_outbound(stack: Stack, plan: dict) -> dict:
    """Interleave send_message.delay runs and the bare-requests reference `repeats` times."""
    outbound.seed(stack)
    ours, refs, cpu = [], [], []
    count = plan["sends"]
    for repeat in range(plan["repeats"]):
        shares = CpuShares(stack)
        run = outbound.run(stack, f"ship{repeat}", count, None, timeout_s=180)
        cpu.append(shares.shares())
        ours.append({**run, "per_s": run["sends_per_s"]})
        refs.append(reference_outbound(stack, count, f"bare{repeat}"))
    result = paired(ours, refs, sends=count)
    result["cpu_at_peak"] = cpu[len(cpu) // 2]
    return result


# -- memory and the seed's load --------------------------------------------------------------


def measure_load(stack: Stack, plan: dict) -> dict:
    """50/s in and 50/s out with status callbacks; PSS peaks and both p95s over the run."""
    stack.stop("simulator")
    stack.simulator_env.pop("SIMULATOR_STATUS_FLOW", None)
    stack.start_simulator()
    outbound.seed(stack)
    stack.start_procfile("flower")
    roots = {name: stack.procs[name].pid for name in (*BUDGETED, "flower", "simulator", "redis")}
    seconds = plan["load_s"]
    result: dict = {}
    with Sampler(roots) as sampler:
        sender = threading.Thread(
            target=lambda: result.update(inbound=inbound.paced(stack, 50, seconds, "load")),
            daemon=True,
        )
        sender.start()
        result["outbound"] = outbound.run(stack, "load", 50 * seconds, 50, timeout_s=90)
        sender.join(seconds + 60)
    stack.stop("flower")
    memory = sampler.report()
    ib, ob = result.get("inbound", {}), result["outbound"]
    return {
        "seconds": seconds,
        "rate_each_way": 50,
        "memory": memory,
        "inbound_p95_ms": ib.get("stream", {}).get("p95_ms"),
        "outbound_p95_ms": ob["enqueue_to_graph"]["p95_ms"],
        "inbound_lost": ib.get("lost"),
        "inbound_pending": ib.get("pending"),
        "inbound_errors": (ib.get("non2xx") or 0) + (ib.get("errors") or 0),
        "outbound_lost": ob["lost"],
        "outbound_pending": ob["pending"],
        "outbound_failed": ob["failed"],
        "outbound_duplicates": ob["duplicates"],
        "outbound_graph_errors": ob["graph_errors"],
        "inbound": ib,
        "outbound": ob,
    }


def table(report: dict) -> str:
    """Render issue 14's table: ours, target, reference and ratio, with the load average."""
    s = report["shipped"]
    lines = [
        f"alfred bench {report['started']}  plan={report['plan']}  db={report['db']}  "
        f"tenants={report['tenants']}  repeats={report['repeats']} (medians)",
        f"load average (1/5/15 min) at start {s.get('loadavg_start')}, "
        f"at end {s.get('loadavg_end')}  (shared 2-core machine: figures are noisy)",
    ]
    row = "{:<44} {:>10} {:>16} {:>8}  {}".format
    lines.append(row("measure", "ours", "reference", "ratio", "target"))
    ib = s.get("inbound")
    if ib:
        lines.append(
            row(
                "inbound deliveries/s accepted+ingested",
                ib["ours_per_s"],
                ib["reference_per_s"],
                ib["ratio"],
                ">= 1000/s and >= 0.5x (reference: HMAC + XADD, same gunicorn)",
            )
        )
        lines.append(row("  per-repeat ratios | lost | duplicates", "", "", "", _runs(ib)))
    ob = s.get("outbound")
    if ob:
        lines.append(
            row(
                "sends/s via send_message.delay",
                ob["ours_per_s"],
                ob["reference_per_s"],
                ob["ratio"],
                ">= 500/s and >= 1x (reference: requests, 4 procs x 8 sessions)",
            )
        )
        lines.append(row("  per-repeat ratios | lost | duplicates", "", "", "", _runs(ob)))
        cpu = ob["cpu_at_peak"]["percent_of_one_core"]
        lines.append(
            "  CPU at the peak, % of one core (of "
            f"{100 * ob['cpu_at_peak']['cores']}): " + ", ".join(f"{k} {v}" for k, v in cpu.items())
        )
    ld = s.get("load")
    if ld:
        mem = ld["memory"]
        lines += [
            row(
                f"PSS MB {'+'.join(BUDGETED)} at 50/s each way",
                mem["peak_budget_pss_mb"],
                "",
                "",
                "<= 256",
            ),
            row("  with flower on top", mem["peak_budget_plus_flower_pss_mb"], "", "", ""),
            row(
                "  per process tree (peak PSS MB)",
                "",
                "",
                "",
                ", ".join(f"{k} {v['peak_pss_mb']}" for k, v in mem["processes"].items()),
            ),
            row(
                f"seed's load p95 ms in | out ({ld['seconds']} s)",
                f"{ld['inbound_p95_ms']} | {ld['outbound_p95_ms']}",
                "",
                "",
                "< 200 both, 0 errors",
            ),
            row(
                "  lost in/out | pending in/out | errors in | failed/dup out",
                f"{ld['inbound_lost']}/{ld['outbound_lost']} | "
                f"{ld['inbound_pending']}/{ld['outbound_pending']} | {ld['inbound_errors']} | "
                f"{ld['outbound_failed']}/{ld['outbound_duplicates']}",
                "",
                "",
                "0",
            ),
        ]
    lines.append("Procfile lines run:")
    lines += [f"  {name}: {line}" for name, line in s.get("lines", {}).items()]
    return "\n".join(lines)


def _runs(part: dict) -> str:
    return f"{part['ratios']} | {part['lost']} ({part['pending']} pending) | {part['duplicates']}"


def run(stack: Stack, wrk: str, plan: dict) -> dict:
    """Start the Procfile's processes and take the three measures; return all of it."""
    out: dict = {"loadavg_start": loadavg()}
    start(stack)
    out["lines"] = {name: stack.procs[name].line for name in BUDGETED}
    parts = plan.get("parts") or ("inbound", "outbound", "load")
    if "inbound" in parts:
        out["inbound"] = measure_inbound(stack, wrk, plan)
    if "outbound" in parts:
        out["outbound"] = measure_outbound(stack, plan)
    if "load" in parts:
        out["load"] = measure_load(stack, plan)
    out["lines"]["flower"] = stack_line("flower")
    out["loadavg_end"] = loadavg()
    for name in reversed(BUDGETED):
        stack.stop(name)
    return out
