"""Access tokens: debug_token and the fb_exchange_token grant, with a grace period."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import bearer, sim_of
from alfred.simulator.state import TokenInfo

SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging", "business_management"]


@dataclass
class TokenFaults:
    """How the next token calls go wrong, each counter spoiling that many."""

    invalid_next: int = 0  # debug_token says is_valid: false of a token that works
    no_scope_next: int = 0  # debug_token leaves out whatsapp_business_messaging
    exchanges: int = 0  # exchanges granted

    def take(self, name: str) -> bool:
        """Use up one of the named counter's spoiled answers, if any remain."""
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


TOKEN_FAULTS = web.AppKey("token_faults", TokenFaults)


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
    faults = request.app[TOKEN_FAULTS]
    if sim.state.token_for(token, now) is None or faults.take("invalid_next"):
        data["is_valid"] = False
        data["error"] = {"code": 190, "subcode": 463, "message": "Session has expired."}
    if faults.take("no_scope_next"):
        data["scopes"] = [s for s in data["scopes"] if s != "whatsapp_business_messaging"]
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
    """Exchange a token for a long-lived one (the old one lives on its grace), or give the app's."""
    sim = sim_of(request)
    cfg, q, now = sim.config, request.query, time.time()
    if q.get("grant_type") not in ("fb_exchange_token", "client_credentials"):
        return _oauth_error(100, "Invalid grant_type")
    if q.get("client_id") != cfg.app_id:
        return _oauth_error(101, "Error validating application. Invalid application ID.")
    if q.get("client_secret") != cfg.app_secret:
        return _oauth_error(1, "Error validating client secret.")
    if q.get("grant_type") == "client_credentials":
        # The app access token, as Meta gives it: the app id and secret joined by a bar.
        return web.json_response(
            {"access_token": f"{cfg.app_id}|{cfg.app_secret}", "token_type": "bearer"}
        )
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
    request.app[TOKEN_FAULTS].exchanges += 1
    grace_end = now + cfg.token_grace_s
    old.valid_until = grace_end if old.valid_until is None else min(old.valid_until, grace_end)
    return web.json_response(
        {"access_token": new_token, "token_type": "bearer", "expires_in": cfg.exchanged_token_ttl_s}
    )


async def revoke(request: web.Request) -> web.Response:
    """POST /_sim/tokens/revoke {"token"}: Meta invalidates one token early (190, subcode 467)."""
    info = sim_of(request).state.tokens.get((await request.json()).get("token", ""))
    if info is None:
        return web.json_response({"error": "unknown token"}, status=400)
    info.valid_until = time.time() - 1
    return web.json_response({"revoked": 1})


async def set_faults(request: web.Request) -> web.Response:
    """POST /_sim/tokens/faults {"invalid_next"?, "no_scope_next"?}: spoil debug_token."""
    faults = request.app[TOKEN_FAULTS]
    spec = await request.json()
    for name in ("invalid_next", "no_scope_next"):
        if name in spec:
            setattr(faults, name, int(spec[name]))
    return web.json_response(vars(faults))


def add_routes(app: web.Application) -> None:
    """Register the token endpoints and their control hooks."""
    app[TOKEN_FAULTS] = TokenFaults()
    app.router.add_post("/_sim/tokens/revoke", revoke)
    app.router.add_post("/_sim/tokens/faults", set_faults)
    app.router.add_get("/{version}/debug_token", debug_token)
    app.router.add_get("/{version}/oauth/access_token", exchange)
