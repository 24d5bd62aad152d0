"""Message templates: list, create (PENDING), then approve by webhook a moment later."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import Simulator, auth_error, authorise, sim_of
from alfred.simulator.webhooks import envelope

NAME = re.compile(r"^[a-z0-9_]{1,512}$")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")


def _waba(request: web.Request) -> str | web.Response:
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    waba_id = request.match_info["waba_id"]
    if waba_id not in sim_of(request).by_waba or waba_id not in grants.waba_ids:
        return errors.unknown_object(waba_id, request.method.lower())
    return waba_id


async def list_templates(request: web.Request) -> web.Response:
    """List the WABA's templates, optionally filtered by name and status."""
    waba_id = _waba(request)
    if isinstance(waba_id, web.Response):
        return waba_id
    items = sim_of(request).state.templates.get(waba_id, [])
    name, status = request.query.get("name"), request.query.get("status")
    data = [
        t
        for t in items
        if (not name or name in t["name"]) and (not status or t["status"] == status)
    ]
    data = data[: int(request.query.get("limit", 100))]
    return web.json_response(
        {"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}
    )


async def create_template(request: web.Request) -> web.Response:
    """Create a template as PENDING; names containing `reject` are later REJECTED."""
    waba_id = _waba(request)
    if isinstance(waba_id, web.Response):
        return waba_id
    sim = sim_of(request)
    try:
        body = await request.json()
    except ValueError:
        return errors.error_response(100, details="The request body is not valid JSON.")
    name, language = body.get("name"), body.get("language")
    category = str(body.get("category", "")).upper()
    if not isinstance(name, str) or not NAME.match(name):
        return errors.error_response(100, details="name must be lowercase letters, digits and _.")
    if not language:
        return errors.error_response(100, message="(#100) The parameter language is required.")
    if category not in CATEGORIES:
        return errors.error_response(
            100, details=f"category must be one of {', '.join(CATEGORIES)}"
        )
    templates = sim.state.templates.setdefault(waba_id, [])
    if any(t["name"] == name and t["language"] == language for t in templates):
        return errors.error_response(
            100,
            message="Invalid parameter",
            details=f"Content in this language already exists for {name} ({language}).",
            subcode=2388024,
        )
    template = {
        "id": str(1_000_000_000_000 + sim.state.next_id()),
        "name": name,
        "language": language,
        "status": "PENDING",
        "category": category,
        "components": body.get("components", []),
    }
    templates.append(template)
    asyncio.get_running_loop().call_later(
        sim.config.template_approval_delay_s, _review, sim, waba_id, template
    )
    return web.json_response({"id": template["id"], "status": "PENDING", "category": category})


def _review(sim: Simulator, waba_id: str, template: dict) -> None:
    """Decide a pending template and announce it in a message_template_status_update."""
    rejected = "reject" in template["name"]
    template["status"] = "REJECTED" if rejected else "APPROVED"
    value = {
        "event": template["status"],
        "message_template_id": int(template["id"]),
        "message_template_name": template["name"],
        "message_template_language": template["language"],
        "message_template_category": template["category"],
        "reason": "INVALID_FORMAT" if rejected else "NONE",
    }
    sim.webhooks.deliver(
        envelope(waba_id, "message_template_status_update", value, int(time.time()))
    )


def add_routes(app: web.Application) -> None:
    """Register the template endpoints."""
    app.router.add_get("/{version}/{waba_id}/message_templates", list_templates)
    app.router.add_post("/{version}/{waba_id}/message_templates", create_template)
