"""The seed's load test: signed webhooks in and send_message out, RATE each per second.

Run by bench/load.sh (bench/load.py), which starts the private stack and sets the
environment: REDIS_URL and the bridge's variables, BENCH_LOAD_TAG (prefix of every wamid and
idempotency key of this run), BENCH_LOAD_RATE, BENCH_LOAD_KEYS (where the enqueue times go).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

# Import bench.* from the repo root; never let bench/ shadow the standard library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import FastHttpUser, User, constant_throughput, events, task  # noqa: E402

from bench.payloads import inbound_body, outbound_message, signed  # noqa: E402

TAG = os.environ.get("BENCH_LOAD_TAG", f"load{int(time.time())}")
RATE = int(os.environ.get("BENCH_LOAD_RATE", "50"))
KEYS_FILE = os.environ.get("BENCH_LOAD_KEYS")
_counter = itertools.count()
_enqueued: dict[str, list[float]] = {}


class WhatsAppUser(FastHttpUser):
    """A simulated WhatsApp user whose every message reaches us as a signed Meta webhook."""

    fixed_count = RATE
    wait_time = constant_throughput(1)

    @task
    def write_to_alfred(self) -> None:
        """POST one new inbound text message, signed as Meta signs it."""
        body = inbound_body(TAG, next(_counter))
        self.client.post("/webhook", data=body, headers=signed(body), name="POST /webhook")


class Orchestrator(User):
    """Alfred's orchestrator answering: send_message.apply_async, timed as a Locust request."""

    fixed_count = RATE
    wait_time = constant_throughput(1)

    @task
    def reply(self) -> None:
        """Enqueue one send_message task and report its time and any error to Locust."""
        from alfred.outbound.tasks import send_message

        message = outbound_message(TAG, next(_counter))
        started = time.perf_counter()
        error: Exception | None = None
        try:
            message["enqueued_at"] = time.time()
            send_message.apply_async(args=[message])
            # When the call began (the message's own stamp) and when it returned: the task is
            # in Redis from then on. The gap is Locust's, not the bridge's: its gevent loop
            # waits for CPU on the cores it shares with the stack.
            _enqueued[message["idempotency_key"]] = [message["enqueued_at"], time.time()]
        except Exception as exc:  # counted as a Locust failure, not a crash of the load
            error = exc
        events.request.fire(
            request_type="celery",
            name="send_message.apply_async",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )


@events.test_stop.add_listener
def save_keys(**_kwargs) -> None:
    """Write each enqueued message's key, call and return times, for the end-to-end figures."""
    if KEYS_FILE:
        Path(KEYS_FILE).write_text(json.dumps(_enqueued))
