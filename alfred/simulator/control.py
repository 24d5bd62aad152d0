"""The /_sim/ control API: stats, accepted messages, faults, reset, tokens, handshake."""

from __future__ import annotations

import secrets
import time

import aiohttp
from aiohttp import web

from alfred.simulator.faults import FaultConfig, Faults
from alfred.simulator.runtime import sim_of


async def stats(request: web.Request) -> web.Response:
    """GET /_sim/stats: counters of sends, webhooks and duplicate idempotency keys."""
    sim = sim_of(request)
    data = sim.state.snapshot_stats()
    data["webhooks"].update(sim.webhooks.pending())
    data["faults"] = sim.faults.config.to_dict()
    return web.json_response(data)


async def messages(request: web.Request) -> web.Response:
    """GET /_sim/messages?tenant=&key=&key_prefix=&limit=: the latest accepted, oldest first.

    key_prefix picks the messages whose idempotency key (biz_opaque_callback_data) starts
    with it: a bench run's own, however many other messages the simulator has kept.
    """
    state = sim_of(request).state
    tenant, key = request.query.get("tenant"), request.query.get("key")
    prefix = request.query.get("key_prefix")
    limit = int(request.query.get("limit", 100))
    picked: list[dict] = []
    for record in reversed(state.messages):
        if (
            (tenant is None or record["tenant"] == tenant)
            and (key is None or record["key"] == key)
            and (prefix is None or str(record["key"] or "").startswith(prefix))
        ):
            picked.append(record)
            if len(picked) >= limit:
                break
    picked.reverse()
    return web.json_response({"data": picked, "count": len(picked)})


async def refusals(request: web.Request) -> web.Response:
    """GET /_sim/refusals?key=: sends refused on the request (code, when, whose), oldest first."""
    key = request.query.get("key")
    picked = [r for r in sim_of(request).state.refusals if key is None or r["key"] == key]
    return web.json_response({"data": picked, "count": len(picked)})


async def get_faults(request: web.Request) -> web.Response:
    """GET /_sim/faults: the fault settings in force."""
    return web.json_response(sim_of(request).faults.config.to_dict())


async def set_faults(request: web.Request) -> web.Response:
    """POST /_sim/faults: replace the fault settings (omitted keys fall back to no fault)."""
    try:
        config = FaultConfig.from_dict(await request.json())
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    sim_of(request).faults = Faults(config)
    return web.json_response(config.to_dict())


async def reset(request: web.Request) -> web.Response:
    """POST /_sim/reset: forget users, windows, limits, messages, counters and faults."""
    sim_of(request).reset()
    return web.json_response({"ok": True})


async def expire_tokens(request: web.Request) -> web.Response:
    """POST /_sim/tokens/expire {"tenant"}: every token of the tenant's number expires now."""
    sim = sim_of(request)
    tenant = sim.config.tenants.get((await request.json()).get("tenant", ""))
    if tenant is None:
        return web.json_response({"error": "unknown tenant"}, status=400)
    expired = 0
    for info in sim.state.tokens.values():
        if tenant.phone_number_id in info.phone_number_ids:
            info.valid_until = time.time() - 1
            expired += 1
    return web.json_response({"expired": expired})


async def verify_webhook(request: web.Request) -> web.Response:
    """POST /_sim/verify_webhook: run Meta's GET handshake against the webhook URL."""
    cfg = sim_of(request).config
    if not cfg.webhook_url:
        return web.json_response({"error": "no webhook_url configured"}, status=400)
    challenge = str(secrets.randbelow(10**9))
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": cfg.verify_token or "",
        "hub.challenge": challenge,
    }
    async with aiohttp.ClientSession() as session, session.get(cfg.webhook_url, params=params) as r:
        text = await r.text()
    return web.json_response(
        {"status": r.status, "verified": r.status == 200 and text == challenge}
    )


async def health(request: web.Request) -> web.Response:
    """GET /_sim/health: the simulator is up."""
    return web.json_response({"ok": True, "tenants": sorted(sim_of(request).config.tenants)})


def add_routes(app: web.Application) -> None:
    """Register the control endpoints."""
    r = app.router
    r.add_get("/_sim/health", health)
    r.add_get("/_sim/stats", stats)
    r.add_get("/_sim/messages", messages)
    r.add_get("/_sim/refusals", refusals)
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_post("/_sim/reset", reset)
    r.add_post("/_sim/tokens/expire", expire_tokens)
    r.add_post("/_sim/verify_webhook", verify_webhook)
