"""POST /{version}/{phone_number_id}/messages: sends and mark-as-read, as Meta answers them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import Simulator, auth_error, authorise, sim_of
from alfred.simulator.state import digits
from alfred.simulator.validation import message_problem
from alfred.simulator.webhooks import failed_steps

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


async def send_message(request: web.Request) -> web.StreamResponse:
    """Accept, reject or fail a send the way the Cloud API would."""
    sim = sim_of(request)
    faults = sim.faults
    if faults.active:
        delay = faults.latency_s()
        if delay:
            await asyncio.sleep(delay)
        if faults.hit(faults.config.drop_rate):
            request.transport and request.transport.close()
            raise asyncio.CancelledError  # nothing is answered on a dropped connection
    phone_number_id = request.match_info["phone_number_id"]
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    tenant = sim.by_phone.get(phone_number_id)
    if tenant is None or phone_number_id not in grants.phone_number_ids:
        return errors.unknown_object(phone_number_id)
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        return _reject(sim, tenant.tenant_id, 100, details="The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _reject(sim, tenant.tenant_id, 100, details="The request body must be an object.")
    if body.get("messaging_product") != "whatsapp":
        return _reject(
            sim,
            tenant.tenant_id,
            100,
            message="(#100) The parameter messaging_product is required.",
        )
    if body.get("status") == "read":
        return _mark_read(sim, tenant.tenant_id, phone_number_id, body)
    problem = message_problem(body)
    if problem:
        return _reject(sim, tenant.tenant_id, problem[0], details=problem[1])
    return await _accept(sim, tenant.tenant_id, body, request.match_info["version"])


def _reject(
    sim: Simulator, tenant_id: str, code: int, *, body: dict | None = None, user=None, **kwargs
) -> web.Response:
    sim.state.stats.rejected[tenant_id][code] += 1
    if body is not None:
        # Which send was refused, when and for whom: a test counts calls per message and
        # measures the back-off between them.
        sim.state.refusals.append(
            {"at": time.time(), "tenant": tenant_id, "code": code,
             "key": body.get("biz_opaque_callback_data"),
             "user_id": getattr(user, "user_id", None), "wa_id": getattr(user, "wa_id", None)}
        )  # fmt: skip
    return errors.error_response(code, **kwargs)


def _mark_read(sim: Simulator, tenant_id: str, phone_number_id: str, body: dict) -> web.Response:
    """Mark an inbound message read (and show a typing indicator if asked)."""
    if sim.state.inbound_wamids.get(body.get("message_id") or "") != phone_number_id:
        return _reject(sim, tenant_id, 100, details="Invalid message_id: no such inbound message.")
    sim.state.stats.marked_read[tenant_id] += 1
    return web.json_response({"success": True})


def _template(sim: Simulator, tenant_id: str, body: dict) -> tuple[dict | None, str]:
    """Find the approved template a template send names."""
    spec = body.get("template") or {}
    name = spec.get("name")
    lang = (spec.get("language") or {}).get("code")
    waba = sim.config.tenants[tenant_id].waba_id
    for template in sim.state.templates.get(waba or "", ()):
        same = template["name"] == name and template["language"] == lang
        if same and template["status"] == "APPROVED":
            return template, ""
    return None, f"template name ({name}) does not exist in {lang}"


def _api_major(version: str) -> int:
    """Return the major of a `v25.0` path segment (0 when it is not one)."""
    head = version[1:].split(".", 1)[0]
    return int(head) if version[:1] == "v" and head.isdigit() else 0


def _reacted_to_unknown(sim: Simulator, phone_number_id: str, body: dict) -> bool:
    """Tell whether a reaction names no message of this number's chats (Meta: 131009)."""
    message_id = (body.get("reaction") or {}).get("message_id")
    if sim.state.inbound_wamids.get(message_id) == phone_number_id:
        return False
    ours = sim.state.by_wamid.get(message_id)
    # Reacting to a reaction is refused like reacting to nothing (reaction-messages).
    return ours is None or ours["phone_number_id"] != phone_number_id or ours["type"] == "reaction"


async def _accept(sim: Simulator, tenant_id: str, body: dict, version: str) -> web.Response:
    """Apply throughput, pair and template rules, then accept and schedule the statuses."""
    state, cfg, faults = sim.state, sim.config, sim.faults
    tenant = cfg.tenants[tenant_id]
    now = time.monotonic()
    to = body.get("to")
    if to:  # With both, the phone number wins, as at Meta.
        user = state.user(tenant_id, wa_id=digits(str(to)))
        contact = {"input": to, "wa_id": user.wa_id}
    else:
        user = state.user(tenant_id, user_id=str(body["recipient"]))
        contact = {"input": body["recipient"], "user_id": user.user_id}
    if not state.take_mps(tenant.phone_number_id, tenant.mps, now):
        return _reject(sim, tenant_id, 130429, body=body, user=user)
    if not state.take_pair(tenant.phone_number_id, user.user_id, now):
        return _reject(sim, tenant_id, 131056, body=body, user=user)
    kind = body.get("type", "text")
    category = "service"
    if kind == "template":
        template, details = _template(sim, tenant_id, body)
        if template is None:
            return _reject(sim, tenant_id, 132001, body=body, user=user, details=details)
        category = template["category"].lower()
    injected = None
    if faults.active:
        injected = faults.recipient_error_code(user.wa_id, user.user_id) or faults.error_code()
    if injected is not None and not errors.lookup(injected).asynchronous:
        return _reject(sim, tenant_id, injected, body=body, user=user)
    wamid = state.new_wamid(user.wa_id or user.user_id)
    in_window = state.window_open(user, time.time())
    record = {
        "wamid": wamid,
        "tenant": tenant_id,
        "phone_number_id": tenant.phone_number_id,
        "to": to,
        "recipient": body.get("recipient"),
        "recipient_id": user.wa_id,
        "user_id": user.user_id,
        "username": user.username,
        "type": kind,
        "key": body.get("biz_opaque_callback_data"),
        "category": category,
        # pricing: service and utility messages inside the window are free_customer_service.
        "free": category in ("service", "utility") and in_window,
        "api_major": _api_major(version),
        "conversation_id": hashlib.md5(f"{tenant_id}:{user.user_id}".encode()).hexdigest(),  # noqa: S324
        "accepted_at": time.time(),
        "body": body,
    }
    state.record(record)
    state.stats.accepted[tenant_id] += 1
    code = injected or _async_failure(sim, body, user, in_window, tenant.phone_number_id)
    if code is not None:
        state.stats.failed_async[tenant_id][code] += 1
        sim.webhooks.schedule(
            record, [(cfg.status_delay_s, *step[1:]) for step in failed_steps(code)]
        )
    else:
        flow = cfg.status_flow
        if kind == "reaction":
            # reaction-messages: only a sent status; delivered and read are not triggered.
            flow = tuple(s for s in flow if s == "sent")
        if faults.hit(faults.config.out_of_order_rate):
            flow = tuple(reversed(flow))
        delay = cfg.status_delay_s
        sim.webhooks.schedule(record, [(delay * (i + 1), s, None) for i, s in enumerate(flow)])
    if faults.active and faults.hit(faults.config.timeout_rate):
        # The send is accepted, but the client gives up first: exactly the ambiguous case.
        await asyncio.sleep(faults.config.timeout_hold_s)
    result = {"id": wamid}
    if kind == "template":
        result["message_status"] = "accepted"
    return web.json_response(
        {"messaging_product": "whatsapp", "contacts": [contact], "messages": [result]}
    )


def _async_failure(
    sim: Simulator, body: dict, user, in_window: bool, phone_number_id: str
) -> int | None:
    """Return the code of a failure Meta reports later by webhook, if this send has one."""
    cfg, kind = sim.config, body.get("type", "text")
    if user.wa_id and user.wa_id in cfg.undeliverable:
        return 131026
    if cfg.enforce_window and kind != "template" and not in_window:
        return 131047
    if kind == "reaction" and _reacted_to_unknown(sim, phone_number_id, body):
        return 131009
    if kind in MEDIA_TYPES:
        media_id = (body.get(kind) or {}).get("id")
        if media_id and media_id not in sim.state.media:
            return 131053
    return None


def add_routes(app: web.Application) -> None:
    """Register the messages endpoint."""
    app.router.add_post("/{version}/{phone_number_id}/messages", send_message)
