"""A tenant's token revoked by Meta mid-load: sends wait for the rotation, none is send_failed.

A real Celery worker (in-process, threads) sends 200 messages to the simulator over HTTP at
about 40/s; a third of the way in the simulator revokes the token in use (190, "Session has
expired"). The sender asks for a rotation, the rotation exchanges a new token (checked with
debug_token) and swaps it in, and every message goes out with it. The integration suite has
the 40-send version (tests/integration/test_token_expiry_midflight.py); this one counts.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from alfred import runtime
from alfred.db import session_scope
from alfred.models import SendAttempt, TenantToken
from alfred.outbound.pending import outbound_journal
from alfred.tokens.rotation import Rotator
from alfred.tokens.store import current_token
from tests.integration.test_ingest_pipeline import stream_entries, wait_for
from tests.integration.test_send_pipeline import open_window
from tests.resilience.harness import Figures
from tests.resilience.test_graph_faults import _rows

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(300),
]
SENDS = 200
USERS = [f"+4477007{n:05d}" for n in range(100)]  # two each: inside our pacing of one user
SENT = {"accepted", "sent", "delivered", "read"}


def test_token_revoked_mid_load_recovers_through_rotation_with_no_send_failed(
    meta, celery_worker, env, redis_client
):
    from alfred.tasks import send_message

    simulator = meta
    settings = runtime.settings()
    home = settings.tenants["home"]
    for user in USERS:
        open_window(env["DATABASE_URL"], "home", user.lstrip("+"))
    # The token in use is one we rotated to, as in production after the first Monday.
    assert Rotator(settings, redis_client).rotate(home).outcome == "rotated"
    in_use = current_token(home, settings).reveal()
    keys = [f"revoked-{i:04d}" for i in range(SENDS)]
    revoked_at: list[float] = []

    def load() -> None:
        for i, key in enumerate(keys):
            if i == SENDS // 3:
                answer = requests.post(
                    f"{simulator.url}/_sim/tokens/revoke", json={"token": in_use}, timeout=5
                )
                assert answer.status_code == 200
                revoked_at.append(time.time())
            send_message.delay(
                {"tenant_id": "home", "to": USERS[i % len(USERS)], "type": "text",
                 "text": {"body": f"message {i}"}, "idempotency_key": key}
            )  # fmt: skip
            time.sleep(1 / 40)

    started = time.time()
    thread = threading.Thread(target=load)
    thread.start()
    thread.join(60)
    wait_for(lambda: outbound_journal(redis_client).size() == 0, 180)
    done = time.time()
    rows = _rows(env["DATABASE_URL"], keys)
    accepted = [m for m in simulator.state.messages(limit=10_000) if m["key"] in set(keys)]
    failed = [e for e in stream_entries(redis_client) if e["event"] == "send_failed"]
    with session_scope(env["DATABASE_URL"]) as session:
        refused = session.scalar(
            select(func.count()).select_from(SendAttempt).where(SendAttempt.error_code == 190)
        )
        tokens = session.scalar(
            select(func.count()).select_from(TenantToken).where(TenantToken.tenant_id == "home")
        )
    after = sorted(m["accepted_at"] for m in accepted if m["accepted_at"] > revoked_at[0])
    figures = Figures(
        "token-revoked-mid-load",
        messages_in=len(keys),
        messages_out=len([r for r in rows if r.status in SENT]),
        faults=f"the token in use revoked after {SENDS // 3} sends (190)",
        lost=len(set(keys) - {r.idempotency_key for r in rows}),
        duplicated=len(accepted) - len({m["key"] for m in accepted}),
        recovery_s=(after[0] - revoked_at[0]) if after else None,
        notes=(
            f"calls={len(accepted) + refused} refused_190={refused}"
            f" send_failed={len(failed)} rotations_stored={tokens}"
            f" drained_after_revoke={done - revoked_at[0]:.1f}s elapsed={done - started:.0f}s"
        ),
    )
    figures.report()
    assert figures.lost == 0 and figures.duplicated == 0, figures.line()
    assert refused >= 1, figures.line()  # the revocation was met
    assert failed == [], figures.line()
    assert {r.status for r in rows} <= SENT, figures.line()
    assert sorted(m["key"] for m in accepted) == keys
    assert tokens == 2, figures.line()  # rotated once more, after the revocation
    # A 190 costs a message no attempt: each went out on its one accepted call.
    assert max(r.attempts for r in rows) == 1, figures.line()
