"""Simulated users: inbound messages built as Meta sends them, which open the window."""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from alfred.simulator.runtime import Simulator, sim_of
from alfred.simulator.state import digits
from alfred.simulator.webhooks import display_number, envelope, messages_value

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
MIME = {"image": "image/jpeg", "audio": "audio/ogg; codecs=opus", "video": "video/mp4",
        "document": "application/pdf", "sticker": "image/webp"}  # fmt: skip
MAX_REMEMBERED = 100_000  # inbound wamids kept for mark-as-read
LOOKBACK = 200  # accepted messages searched for the one a button reply answers


class BadInbound(ValueError):
    """The control request does not describe a message a user could send."""


def _type_object(sim: Simulator, phone_number_id: str, kind: str, spec: dict) -> dict:
    """Return the message's own object under Meta's key, filling in what the caller left out."""
    given = spec.get(kind)
    if kind == "text":
        return {"body": given if isinstance(given, str) else (given or {}).get("body", "")}
    obj = dict(given) if isinstance(given, dict) else {}
    if kind in MEDIA_TYPES and "id" not in obj:
        # Store real bytes so the bridge can fetch the media like any other.
        data = str(spec.get("data", f"simulated {kind}")).encode()
        media_id = str(2 * 10**15 + sim.state.next_id())
        mime = obj.get("mime_type", MIME[kind])
        sha = hashlib.sha256(data).hexdigest()
        sim.state.media[media_id] = {"data": data, "mime_type": mime, "sha256": sha,
                                     "phone_number_id": phone_number_id}  # fmt: skip
        obj.update({"id": media_id, "mime_type": mime, "sha256": sha})
        if spec.get("caption"):
            obj["caption"] = spec["caption"]
    elif kind == "location" and not obj:
        obj = {"latitude": 48.8584, "longitude": 2.2945, "name": "Eiffel Tower"}
    elif kind == "interactive" and not obj:
        obj = {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}
    elif kind == "button" and not obj:
        obj = {"payload": "yes", "text": "Yes"}
    elif kind == "reaction" and not obj:
        raise BadInbound("a reaction needs reaction.message_id and reaction.emoji")
    return obj


def _answered(state, user) -> str:
    """Return the wamid of our latest interactive or template message to the user, or a new one."""
    for i, record in enumerate(reversed(state.messages)):
        if i >= LOOKBACK:
            break
        if record["user_id"] == user.user_id and record["type"] in ("interactive", "template"):
            return record["wamid"]
    return state.new_wamid(user.wa_id or user.user_id)


def build_inbound(sim: Simulator, spec: dict) -> tuple[str, dict]:
    """Turn a control request into (wamid, Meta's webhook payload) and open the window."""
    tenant = sim.config.tenants.get(spec.get("tenant", ""))
    if tenant is None:
        raise BadInbound(f"unknown tenant {spec.get('tenant')!r}")
    phone = spec.get("from")
    wa_id = digits(str(phone)) if phone else None
    if not wa_id and not spec.get("user_id"):
        raise BadInbound("give `from` (a phone number) or `user_id` (a BSUID)")
    state = sim.state
    user = state.user(tenant.tenant_id, wa_id=wa_id, user_id=spec.get("user_id"))
    user.username = spec.get("username", user.username)
    user.profile_name = spec.get("profile_name", user.profile_name)
    now = time.time()
    user.last_inbound = now
    kind = spec.get("type", "text")
    wamid = spec.get("id") or state.new_wamid(wa_id or user.user_id)
    message: dict = {}
    if wa_id:
        message["from"] = wa_id
    message["from_user_id"] = user.user_id
    if spec.get("parent_user_id"):
        message["from_parent_user_id"] = spec["parent_user_id"]
    message.update({"id": wamid, "timestamp": str(int(spec.get("timestamp", now))), "type": kind})
    if spec.get("context"):
        message["context"] = spec["context"]
    elif kind in ("interactive", "button"):
        # A button or list reply answers one of our messages: Meta sends which in `context`.
        message["context"] = {"from": display_number(tenant), "id": _answered(state, user)}
    message[kind] = _type_object(sim, tenant.phone_number_id, kind, spec)
    profile = {"name": user.profile_name or "Simulated User"}
    if user.username:
        profile["username"] = user.username
    contact: dict = {"profile": profile}
    if wa_id:
        contact["wa_id"] = wa_id
    contact["user_id"] = user.user_id
    if spec.get("parent_user_id"):
        contact["parent_user_id"] = spec["parent_user_id"]
    state.inbound_wamids[wamid] = tenant.phone_number_id
    if len(state.inbound_wamids) > MAX_REMEMBERED:
        state.inbound_wamids.pop(next(iter(state.inbound_wamids)))
    state.stats.inbound[tenant.tenant_id] += 1
    # Inbound counts against the number's throughput too (FACTS F4); it is never refused.
    state.take_mps(tenant.phone_number_id, tenant.mps, time.monotonic())
    value = messages_value(tenant, contacts=[contact], messages=[message])
    return wamid, envelope(tenant.waba_id, "messages", value)


async def inbound(request: web.Request) -> web.Response:
    """POST /_sim/inbound: a user writes to a tenant; answers the wamid and the payload."""
    sim = sim_of(request)
    try:
        wamid, payload = build_inbound(sim, await request.json())
    except (BadInbound, ValueError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    sim.webhooks.deliver(payload)
    return web.json_response({"wamid": wamid, "payload": payload})


async def inbound_batch(request: web.Request) -> web.Response:
    """POST /_sim/inbound/batch `{"messages": [...]}`: one webhook POST per message."""
    sim = sim_of(request)
    try:
        specs = (await request.json())["messages"]
        built = [build_inbound(sim, spec) for spec in specs]
    except (BadInbound, ValueError, KeyError, TypeError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    for _, payload in built:
        sim.webhooks.deliver(payload)
    return web.json_response({"wamids": [wamid for wamid, _ in built]})


def add_routes(app: web.Application) -> None:
    """Register the inbound control endpoints."""
    app.router.add_post("/_sim/inbound", inbound)
    app.router.add_post("/_sim/inbound/batch", inbound_batch)
