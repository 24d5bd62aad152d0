"""Tokens: encrypted at rest, replaceable at run time, per tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from alfred.config import Secret
from alfred.db import session_scope
from alfred.models import TenantToken
from alfred.tokens.store import current_token, forget, save_token, swap_token


def test_a_rotated_token_is_stored_encrypted_and_used_from_then_on(settings):
    home, biz = settings.tenants["home"], settings.tenants["biz"]
    assert current_token(home, settings) == home.token  # from ALFRED_TENANTS until rotated
    new = "EAAG-rotated-home-token"
    swap_token(
        settings,
        tenant_id="home",
        token=Secret(new),
        expires_at=datetime.now(UTC) + timedelta(days=60),
    )
    with session_scope(settings.database_url) as session:
        (row,) = session.scalars(select(TenantToken)).all()
        assert new.encode() not in row.token_encrypted
        assert (row.tenant_id, row.active) == ("home", True)
    assert current_token(home, settings).reveal() == new
    assert current_token(biz, settings) == biz.token  # the other tenant is untouched


def test_a_second_rotation_supersedes_the_first(settings):
    home = settings.tenants["home"]
    for value in ("first", "second"):
        with session_scope(settings.database_url) as session:
            save_token(session, settings, tenant_id="home", token=Secret(value), expires_at=None)
    forget()
    assert current_token(home, settings).reveal() == "second"
    with session_scope(settings.database_url) as session:
        active = session.scalars(select(TenantToken.active).order_by(TenantToken.id)).all()
    assert active == [False, True]
