"""Alfred's side of the outbound contract, as a process of its own (tests/resilience/stack.py).

    python -m tests.resilience.orchestrator --tag T --count N --rate R --users +44…,+44…

Message i has the idempotency key `T-i`: even ones go by `send_message.delay`, odd ones as an
«alfred-outbox» entry. A call that fails (Redis failing over) is retried until it succeeds, as
a careful orchestrator would; the key makes a retried one a duplicate the bridge sends once.
Prints one JSON line at the end: how many calls failed and were retried.
"""

from __future__ import annotations

import argparse
import json
import time

from alfred import runtime
from alfred.streams import OUTBOX_STREAM
from alfred.tasks import send_message


def message(tag: str, i: int, users: list[str]) -> dict:
    """Message i: a text to one of the users, keyed `tag-i`."""
    return {
        "tenant_id": "home",
        "to": users[i % len(users)],
        "type": "text",
        "text": {"body": f"reply {i}"},
        "idempotency_key": f"{tag}-{i}",
    }


def send(i: int, body: dict) -> None:
    """Hand one message to the bridge, by the task (even i) or the outbox stream (odd i)."""
    if i % 2 == 0:
        send_message.delay(body)
    else:
        runtime.redis_client().xadd(OUTBOX_STREAM, {"payload": json.dumps(body)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--users", required=True)
    args = parser.parse_args()
    users = args.users.split(",")
    retried, started = 0, time.monotonic()
    for i in range(args.count):
        body = message(args.tag, i, users)
        while True:
            try:
                send(i, body)
                break
            except Exception:  # Redis down or failing over: try again, as Alfred would
                retried += 1
                time.sleep(0.1)
        time.sleep(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
    print(json.dumps({"sent": args.count, "retried": retried}), flush=True)


if __name__ == "__main__":
    main()
