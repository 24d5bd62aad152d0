"""Access tokens: debug_token and the fb_exchange_token grant, with a grace period."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import bearer, sim_of
from alfred.simulator.state import TokenInfo

SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging", "business_management"]


def _oauth_error(code: int, message: str) -> web.Response:
    body = errors.error_body(code, message=message)
    del body["error"]["error_data"]
    return web.json_response(body, status=400)


async def debug_token(request: web.Request) -> web.Response:
    """Describe input_token: validity, expiry, app and scopes."""
    sim = sim_of(request)
    cfg, now = sim.config, time.time()
    caller = bearer(request)
    app_token = f"{cfg.app_id}|{cfg.app_secret}"
    if caller != app_token and sim.state.token_for(caller, now) is None:
        return errors.token_error()
    token = request.query.get("input_token", "")
    info = sim.state.tokens.get(token)
    if info is None:
        error = {"code": 190, "message": "Invalid OAuth access token."}
        return web.json_response({"data": {"error": error, "is_valid": False, "scopes": []}})
    data = _describe(sim.config.app_id, info)
    if sim.state.token_for(token, now) is None:
        data["is_valid"] = False
        data["error"] = {"code": 190, "subcode": 463, "message": "Session has expired."}
    return web.json_response({"data": data})


def _describe(app_id: str, info: TokenInfo) -> dict:
    targets = sorted(info.waba_ids)
    return {
        "app_id": app_id,
        "type": "USER" if info.expires_at else "SYSTEM_USER",
        "application": "Alfred (simulated)",
        "data_access_expires_at": 0,
        "expires_at": info.expires_at,
        "is_valid": True,
        "issued_at": info.issued_at,
        "scopes": SCOPES,
        "granular_scopes": [
            {"scope": "whatsapp_business_management", "target_ids": targets},
            {"scope": "whatsapp_business_messaging", "target_ids": targets},
        ],
        "user_id": "100000000000042",
    }


async def exchange(request: web.Request) -> web.Response:
    """Swap a token for a new long-lived one; the old one works on for the grace period."""
    sim = sim_of(request)
    cfg, q, now = sim.config, request.query, time.time()
    if q.get("grant_type") != "fb_exchange_token":
        return _oauth_error(100, "Invalid grant_type")
    if q.get("client_id") != cfg.app_id:
        return _oauth_error(101, "Error validating application. Invalid application ID.")
    if q.get("client_secret") != cfg.app_secret:
        return _oauth_error(1, "Error validating client secret.")
    old_token = q.get("fb_exchange_token", "")
    old = sim.state.token_for(old_token, now)
    if old is None:
        return _oauth_error(190, "Invalid OAuth access token.")
    new_token = "EAA" + secrets.token_urlsafe(48)
    sim.state.tokens[new_token] = TokenInfo(
        set(old.phone_number_ids),
        set(old.waba_ids),
        issued_at=int(now),
        expires_at=int(now) + cfg.exchanged_token_ttl_s,
    )
    grace_end = now + cfg.token_grace_s
    old.valid_until = grace_end if old.valid_until is None else min(old.valid_until, grace_end)
    return web.json_response(
        {"access_token": new_token, "token_type": "bearer", "expires_in": cfg.exchanged_token_ttl_s}
    )


def add_routes(app: web.Application) -> None:
    """Register the token endpoints."""
    app.router.add_get("/{version}/debug_token", debug_token)
    app.router.add_get("/{version}/oauth/access_token", exchange)
