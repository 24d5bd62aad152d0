"""Run the lifecycle in this process and SIGKILL it at the Nth time it reaches a step.

python -m tests.lifecycle.killed_run STEP N NOW BATCH_SIZE
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from datetime import datetime

from alfred import runtime
from alfred.blobstore import store_for
from alfred.lifecycle import service


def main() -> None:
    step, nth, now, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    seen: Counter = Counter()

    def maybe_die(name: str) -> None:
        seen[name] += 1
        if name == step and seen[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    settings = runtime.settings()
    service.run(
        settings,
        store=store_for(settings),
        client=runtime.redis_client(),
        now=datetime.fromisoformat(now),
        batch_size=batch,
        step=maybe_die,
    )
    print("finished without being killed")


if __name__ == "__main__":
    main()
