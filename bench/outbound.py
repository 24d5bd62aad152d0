"""Outbound measurements: send_message throughput and enqueue-to-Graph latency, per worker pool."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import requests

from bench import accounting
from bench.payloads import RECIPIENTS, TENANT_IDS, outbound_message, recipient
from bench.sampling import Ticker, proc_stats
from bench.stack import TENANTS, Stack
from bench.stats import percentile, summary_ms

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime in /proc/<pid>/stat


def seed(stack: Stack) -> None:
    """Open the window of every bench recipient, for both tenants."""
    stack.seed_windows([recipient(i) for i in range(RECIPIENTS)])


def sim_stats(stack: Stack) -> dict:
    """Return the simulator's counters."""
    return requests.get(f"{stack.sim_url}/_sim/stats", timeout=5).json()


def ledger(stack: Stack, prefix: str, enqueued) -> dict:
    """Account for a run's sends: sent, failed, pending, lost, duplicated (bench/accounting.py)."""
    return accounting.sends(stack.redis(), stack.sim_url, stack.database_url, prefix, enqueued)


def failed_count(stack: Stack, prefix: str) -> int:
    """Count this run's messages the bridge recorded as failed, dead-lettered or invalid."""
    return len(accounting.failed_keys(stack.database_url, prefix))


def wait_outcomes(stack: Stack, prefix: str, before: dict, expected: int, timeout_s: float) -> None:
    """Wait until `expected` sends since `before` were accepted or failed, at most timeout_s.

    Only a wait: what became of each send is counted by ledger() afterwards, which tells a
    backlog still draining when the wait ended from a loss.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sim_stats(stack)["sends"]["accepted"] - before["sends"]["accepted"]
        if done + failed_count(stack, prefix) >= expected:
            return
        time.sleep(0.25)


def enqueue(messages: list[dict], rate: float | None, deadline_s: float) -> list[dict]:
    """Call send_message.apply_async for each message, paced at `rate`/s or as fast as possible."""
    from alfred.outbound.tasks import send_message

    started = time.perf_counter()
    done: list[dict] = []

    def one(message: dict) -> None:
        message["enqueued_at"] = time.time()
        send_message.apply_async(args=[message])
        done.append(message)

    if rate is None:
        # A few threads: one publisher alone would measure the enqueue, not the workers.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, messages))
        return done
    for i, message in enumerate(messages):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() - started > deadline_s:
            break
        one(message)
    return done


def run(stack: Stack, label: str, count: int, rate: float | None, timeout_s: float) -> dict:
    """Enqueue `count` sends, wait for every outcome, and report rate, latency and losses."""
    prefix = f"{label}-{int(time.time() * 1000)}"
    before = sim_stats(stack)
    messages = [outbound_message(prefix, i, users=RECIPIENTS) for i in range(count)]
    started = time.time()
    sent = enqueue(messages, rate, deadline_s=count / rate + 10 if rate else timeout_s)
    enqueue_s = time.time() - started
    wait_outcomes(stack, prefix, before, len(sent), timeout_s)
    count = ledger(stack, prefix, [m["idempotency_key"] for m in sent])
    accepted = count.pop("accepted_at")
    after = sim_stats(stack)
    stamps = sorted(accepted.values())
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    latencies = [
        accepted[m["idempotency_key"]] - m["enqueued_at"]
        for m in sent
        if m["idempotency_key"] in accepted
    ]
    rejected = after["sends"]["rejected_total"] - before["sends"]["rejected_total"]
    return {
        "mode": f"paced {rate}/s" if rate else "max rate",
        "enqueue_per_s": round(len(sent) / enqueue_s, 1) if enqueue_s else None,
        **count,
        "accepted": count["sent"],
        "graph_errors": rejected,
        "sends_per_s": round((len(stamps) - 1) / span, 1) if span else None,
        "enqueue_to_graph": summary_ms(latencies),
    }


def reference(stack: Stack, count: int, concurrency: int = 32) -> dict:
    """Measure the simulator's raw capacity with a direct aiohttp loop (no bridge at all)."""
    return asyncio.run(_reference(stack, count, concurrency))


async def _reference(stack: Stack, count: int, concurrency: int) -> dict:
    answered = accepted = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    tag = f"ref-{int(time.time() * 1000)}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            nonlocal answered, accepted
            while not queue.empty():
                i = queue.get_nowait()
                message = outbound_message(tag, i, users=RECIPIENTS)
                tenant = TENANTS[message["tenant_id"]]
                body = {
                    "messaging_product": "whatsapp",
                    "to": message["to"],
                    "type": "text",
                    "text": message["text"],
                    "biz_opaque_callback_data": message["idempotency_key"],
                }
                url = f"{stack.sim_url}/v25.0/{tenant['phone_number_id']}/messages"
                headers = {"Authorization": f"Bearer {tenant['token']}"}
                async with http.post(url, json=body, headers=headers) as response:
                    await response.read()
                    answered += 1
                    accepted += response.status == 200

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=120)
        seconds = time.perf_counter() - started
    return {
        "requests": count,
        "answered_per_s": round(answered / seconds, 1),
        "accepted_per_s": round(accepted / seconds, 1),
        "note": f"{len(TENANT_IDS)} tenants at {TENANTS['home']['mps']} mps each: "
        "the simulator refuses (130429) whatever exceeds that",
    }


def group_cpu_s(pgid: int) -> tuple[float, int]:
    """Return (CPU seconds, processes) of every live process in process group `pgid`.

    Each stack process starts its own group (bench/stack.py), so the group is the worker's
    main process and its pool children (prefork), without walking the tree. utime + stime of
    each, plus cutime + cstime: a child that exits and is reaped mid-run (a recycled pool
    child) hands its time to its parent there, so it is neither lost nor counted twice.
    """
    total = 0
    count = 0
    for _pid, fields in proc_stats():
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
            count += 1
    return total / CLOCK_TICKS, count


class CpuClock(Ticker):
    """Sample the worker's and the simulator's CPU seconds every `interval` s on a thread.

    The worker is looked up in stack.procs at each tick rather than passed in: start_worker
    returns only once the worker consumes, and by then a drain has already sent some, so the
    sampling has to begin before the worker exists. A drain reads the clock at the first and
    the last send's simulator timestamps, and at the bounds of its steady window (at(),
    interpolated), so the worker's boot and the tasks left after the last send are not
    charged to the sends.
    """

    def __init__(self, stack: Stack, interval: float = 0.05):
        super().__init__(interval)
        self.stack = stack
        self.simulator = stack.procs["simulator"].pid
        self.samples: list[tuple[float, float, float]] = []  # (time, worker s, simulator s)
        self.worker_processes = 0

    def tick(self) -> None:
        worker = self.stack.procs.get("worker")
        worker_s, count = group_cpu_s(worker.pid) if worker else (0.0, 0)
        self.worker_processes = max(self.worker_processes, count)
        self.samples.append((time.time(), worker_s, group_cpu_s(self.simulator)[0]))

    def at(self, when: float) -> tuple[float, float] | None:
        """Return (worker s, simulator s) at `when`, between the two samples around it."""
        for (t0, w0, s0), (t1, w1, s1) in itertools.pairwise(self.samples):
            if t0 <= when <= t1:
                share = (when - t0) / (t1 - t0) if t1 > t0 else 0.0
                return w0 + share * (w1 - w0), s0 + share * (s1 - s0)
        return None


def drain(stack: Stack, pool: str, concurrency: int, count: int, timeout_s: float) -> dict:
    """Queue `count` sends with no worker, then start one: its sends/s and CPU per send.

    run() publishes while the worker consumes, so the publisher (the orchestrator, on another
    machine in production) takes its share of the bench host's cores from the worker. Here the
    queue is full before the worker starts, so the rate is the worker's alone, and the CPU it
    spends per send says how many sends/s the cores could carry.

    Two rates. sends_per_s spans the first to the last accepted send, so it includes the
    warm-up (pool children importing, connections opening) and the tail (the last children
    finishing, one by one): on a run of a few seconds these weigh enough to under-report the
    sustained rate. steady_sends_per_s keeps only the sends between the 10th and the 90th
    percentile of the accepted timestamps, and the worker's and the simulator's CPU per send
    are read over that same window too (CpuClock.at interpolates between its 50 ms samples);
    the whole-run CPU figures stay beside them.

    The worker re-drives every journaled entry when it starts (alfred/journals/tasks.py):
    these are the same messages, published again behind the originals; the bridge sends each
    once (duplicates counts any extra), and the no-op copies mostly run after the last send.
    """
    stack.stop("worker")
    stack.flush_redis()
    seed(stack)  # the windows' Redis copies went with the flush
    prefix = f"drain{pool}-{int(time.time() * 1000)}"
    before = sim_stats(stack)
    messages = [outbound_message(prefix, i, users=RECIPIENTS) for i in range(count)]
    sent = enqueue(messages, None, deadline_s=timeout_s)
    started = time.time()
    try:
        with CpuClock(stack) as clock:
            stack.start_worker(pool, concurrency)
            wait_outcomes(stack, prefix, before, len(sent), timeout_s)
            time.sleep(3 * clock.interval)  # a sample after the last send
    finally:
        stack.stop("worker")
    count = ledger(stack, prefix, [m["idempotency_key"] for m in sent])
    accepted = count.pop("accepted_at")
    after = sim_stats(stack)
    stamps = sorted(accepted.values())
    whole = window(clock, stamps, stamps[0], stamps[-1]) if stamps else {}
    low, high = percentile(stamps, 10), percentile(stamps, 90)
    steady = window(clock, stamps, low, high) if stamps else {}
    rejected = after["sends"]["rejected_total"] - before["sends"]["rejected_total"]
    return {
        "mode": "drain",
        "pool": f"{pool} -c {concurrency}",
        **count,
        "accepted": count["sent"],
        "graph_errors": rejected,
        "sends_per_s": whole.get("sends_per_s"),
        "steady_sends_per_s": steady.get("sends_per_s"),
        "steady_sends": steady.get("sends"),
        "steady_s": steady.get("seconds"),
        "worker_start_to_last_s": round(stamps[-1] - started, 2) if stamps else None,
        "worker_processes": clock.worker_processes,
        "worker_cpu_ms_per_send": whole.get("worker_cpu_ms"),
        "simulator_cpu_ms_per_send": whole.get("simulator_cpu_ms"),
        "steady_worker_cpu_ms_per_send": steady.get("worker_cpu_ms"),
        "steady_simulator_cpu_ms_per_send": steady.get("simulator_cpu_ms"),
    }


def window(clock: CpuClock, stamps: list[float], low: float, high: float) -> dict:
    """Return the sends/s and CPU ms per send between the sorted accepted stamps low and high.

    The stamps from low to high inclusive bound n - 1 intervals, so n - 1 sends are counted
    over high - low seconds (the first stamp in the window is where the clock starts), and the
    CPU is read from the clock at low and at high.
    """
    inside = sum(low <= t <= high for t in stamps)
    sends, seconds = inside - 1, high - low
    result = {"sends": sends, "seconds": round(seconds, 2), "sends_per_s": None}
    if sends < 1 or seconds <= 0:
        return result
    result["sends_per_s"] = round(sends / seconds, 1)
    first, last = clock.at(low), clock.at(high)
    if first and last:
        result["worker_cpu_ms"] = round(1000 * (last[0] - first[0]) / sends, 3)
        result["simulator_cpu_ms"] = round(1000 * (last[1] - first[1]) / sends, 3)
    return result


# kombu's Redis transport keeps a queue as a Redis list named after it.
FLOOR_QUEUE = "alfred"


class QueueWatch(Ticker):
    """Poll the length of a queue every `interval` s on a thread.

    Like CpuClock, it runs before the worker exists: start_worker returns only once the worker
    consumes, and by then it has already taken some tasks. `started` is the first poll that
    finds fewer than `queued` tasks listed (the worker took its first); `finished` is the
    first of two polls in a row with the list empty. The worker still runs the last few tasks
    it popped (no more than its concurrency: celeryconfig.worker_prefetch_multiplier is 1),
    a few milliseconds that this span leaves out.
    """

    def __init__(self, stack: Stack, queued: int, interval: float = 0.02):
        super().__init__(interval)
        self.client = stack.redis()
        self.queued = queued
        self.started: float | None = None
        self.finished: float | None = None
        self.done = threading.Event()
        self._empty_since: float | None = None

    def tick(self) -> bool:
        now = time.time()
        listed = self.client.llen(FLOOR_QUEUE)
        if self.started is None and listed < self.queued:
            self.started = now
        if self.started is None or listed:
            self._empty_since = None
            return False
        if self._empty_since is None:
            self._empty_since = now
            return False
        self.finished = self._empty_since
        self.done.set()
        return True


def celery_floor(stack: Stack, pool: str, concurrency: int, count: int, timeout_s: float) -> dict:
    """Drain `count` tasks that do almost nothing, as drain() does sends: Celery's own cost.

    The reference beside the send drain: the same worker, pool and concurrency, the same
    procedure (queue filled with the worker stopped, then the worker started), but each task
    is alfred.record_sends with an empty audit ready list, one Redis LPOP that returns 0. What
    a task costs here (consume, ack, trace, the pool's hand-off) every send pays too, so the
    send's CPU over this one is the share that is the bridge's own work.

    There is no simulator stamp, so the queue is watched instead (QueueWatch): the rate is the
    tasks over the time from the first one taken off the list to the list and the unacked hash
    both empty, and the worker's CPU is read from a CpuClock at those two moments. This span
    has the worker's first tasks and its last ones in it, as the send drain's whole run does,
    not only a steady middle; with no Graph call to wait on, there is little to warm up.
    """
    from alfred.outbound.tasks import record_sends

    stack.stop("worker")
    stack.flush_redis()  # no audit records left to write, nothing journaled to re-drive
    for _ in range(count):
        record_sends.apply_async()
    queued = stack.redis().llen(FLOOR_QUEUE)
    try:
        with CpuClock(stack) as clock, QueueWatch(stack, queued) as watch:
            stack.start_worker(pool, concurrency)
            watch.done.wait(timeout_s)
            time.sleep(3 * clock.interval)  # a sample after the last task
    finally:
        stack.stop("worker")
    result = {
        "pool": f"{pool} -c {concurrency}",
        "tasks": queued,
        "seconds": None,
        "tasks_per_s": None,
        "worker_cpu_ms_per_task": None,
        "worker_processes": clock.worker_processes,
    }
    if watch.started is None or watch.finished is None or watch.finished <= watch.started:
        result["note"] = f"not drained within {timeout_s:g} s"
        return result
    seconds = watch.finished - watch.started
    result["seconds"] = round(seconds, 2)
    result["tasks_per_s"] = round(queued / seconds, 1)
    first, last = clock.at(watch.started), clock.at(watch.finished)
    if first and last and queued:
        result["worker_cpu_ms_per_task"] = round(1000 * (last[0] - first[0]) / queued, 3)
    return result
