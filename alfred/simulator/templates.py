"""Message templates: list, create (PENDING), then approve by webhook a moment later."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from alfred.simulator import errors, paging
from alfred.simulator.runtime import Simulator, auth_error, authorise, sim_of
from alfred.simulator.webhooks import envelope

NAME = re.compile(r"^[a-z0-9_]{1,512}$")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
PARAMETER_FORMATS = ("POSITIONAL", "NAMED")
# Fields of a WhatsAppBusinessHSM (message template) node; the simulator fills the first set.
DEFAULT_FIELDS = ("name", "parameter_format", "components", "language", "status", "category")
TEMPLATE_FIELDS = frozenset(
    (*DEFAULT_FIELDS, "id", "rejected_reason", "previous_category", "correct_category",
     "message_send_ttl_seconds", "library_template_name", "quality_score", "sub_category",
     "cta_url_link_tracking_opted_out", "degrees_of_freedom_spec")
)  # fmt: skip
DEFAULT_LIMIT, MAX_LIMIT = 25, 1000
TEMPLATE_LIMIT = 250  # message_template_limit of an unverified business


def _waba(request: web.Request) -> str | web.Response:
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    waba_id = request.match_info["waba_id"]
    if waba_id not in sim_of(request).by_waba or waba_id not in grants.waba_ids:
        return errors.unknown_object(waba_id, request.method.lower())
    return waba_id


async def list_templates(request: web.Request) -> web.Response:
    """List the WABA's templates: filters, `fields`, `summary` and cursor paging, as Graph does."""
    waba_id = _waba(request)
    if isinstance(waba_id, web.Response):
        return waba_id
    q = request.query
    fields = [f.strip() for f in q.get("fields", "").split(",") if f.strip()]
    if unknown := [f for f in fields if f not in TEMPLATE_FIELDS]:
        return errors.error_response(
            100,
            message=f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type "
            "(WhatsAppBusinessHSM)",
        )
    items = sim_of(request).state.templates.get(waba_id, [])
    matching = [t for t in items if _matches(t, q)]
    try:
        limit = max(1, min(int(q.get("limit", DEFAULT_LIMIT)), MAX_LIMIT))
        start = paging.decode(q["after"]) + 1 if "after" in q else 0
        if "before" in q:
            start = max(0, paging.decode(q["before"]) - limit)
    except ValueError as exc:
        return errors.error_response(100, message=f"(#100) {exc}")
    page = matching[start : start + limit]
    body: dict = {"data": [_shown(t, fields) for t in page]}
    if page:
        body["paging"] = paging.links(request, start, len(page), len(matching), limit)
    if summary := _summary(q.get("summary", ""), waba_id, items):
        body["summary"] = summary
    return web.json_response(body)


def _matches(template: dict, q) -> bool:
    """Apply Graph's filters: name and content contain, status/category/language in a list."""
    for key in ("status", "category", "language"):
        if key in q and template[key] not in q[key].split(","):
            return False
    if q.get("name") and q["name"] not in template["name"]:
        return False
    text = " ".join(str(c.get("text", "")) for c in template["components"])
    return not (q.get("content") and q["content"] not in text)


def _shown(template: dict, fields: list[str]) -> dict:
    """Return the asked fields of a template (Graph's default set without `fields`), id always."""
    shown = {k: template[k] for k in (fields or DEFAULT_FIELDS) if k in template}
    shown["id"] = template["id"]
    return shown


def _summary(asked: str, waba_id: str, items: list[dict]) -> dict:
    """Answer `summary=total_count,…` (message_templates reference); unknown names are ignored."""
    known = {
        "total_count": len(items),
        "message_template_count": len(items),
        "message_template_limit": TEMPLATE_LIMIT,
        "are_translations_complete": True,
    }
    return {k: known[k] for k in asked.split(",") if k in known}


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
    parameter_format = str(body.get("parameter_format", "POSITIONAL")).upper()
    if parameter_format not in PARAMETER_FORMATS:
        return errors.error_response(
            100, details=f"parameter_format must be one of {', '.join(PARAMETER_FORMATS)}"
        )
    template = {
        "id": str(1_000_000_000_000 + sim.state.next_id()),
        "name": name,
        "parameter_format": parameter_format,
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
    if rejected:
        template["rejected_reason"] = "INVALID_FORMAT"
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
