"""Business management: the phone number, the WABA, its phone numbers and subscribed apps.

Shapes follow Meta's WhatsApp Business Account and Phone Number references (Graph
`whats-app-business-account-to-number-current-status`, `/{waba-id}/subscribed_apps`); `doctor`
reads them to check each tenant's setup.
"""

from __future__ import annotations

from aiohttp import web

from alfred.config import Tenant
from alfred.simulator import errors
from alfred.simulator.runtime import Simulator, auth_error, authorise, sim_of

# What GET /{phone-number-id} answers without `fields`, as Meta's reference example shows.
PHONE_DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)
WABA_DEFAULT_FIELDS = ("id", "name", "timezone_id", "message_template_namespace")
# Fields Meta's nodes have that the simulator does not model: asked for, they are left out
# (as Graph leaves out an unset field); anything else is Graph's "nonexisting field" error.
PHONE_OTHER_FIELDS = frozenset(
    ("conversational_automation", "quality_score", "new_name_status", "is_on_biz_app",
     "is_pin_enabled", "is_preverified_number", "search_visibility", "health_status",
     "eligibility_for_api_business_global_search", "certificate", "new_certificate",
     "last_onboarded_time", "country_code", "country_dial_code",
     "whatsapp_business_manager_messaging_limit")
)  # fmt: skip
WABA_OTHER_FIELDS = frozenset(
    ("status", "is_enabled_for_insights", "marketing_messages_lite_api_status",
     "marketing_messages_onboarding_status", "on_behalf_of_business_info", "health_status",
     "subscribed_apps", "owner_business_info", "disable_marketing_messages_on_cloud_api")
)  # fmt: skip
PHONE_NODE, WABA_NODE = "WhatsAppBusinessPhoneNumber", "WhatsAppBusinessAccount"
# The writable knobs of POST /_sim/business: what `doctor` may find wrong with a number.
PHONE_KNOBS = (
    "verified_name",
    "code_verification_status",
    "quality_rating",
    "platform_type",
    "throughput",
    "status",
    "name_status",
    "account_mode",
    "messaging_limit_tier",
    "is_official_business_account",
)


def formatted_number(tenant: Tenant) -> str:
    """Return the tenant's display number as Meta formats it, e.g. "+1 555-000-0001"."""
    tail = tenant.phone_number_id[-7:].rjust(7, "0")
    return f"+1 555-{tail[:3]}-{tail[3:]}"


def phone_number(sim: Simulator, tenant: Tenant) -> dict:
    """Return every field the simulator knows of a tenant's phone number."""
    phone = {
        "id": tenant.phone_number_id,
        "display_phone_number": formatted_number(tenant),
        "verified_name": f"Alfred {tenant.tenant_id}",
        "code_verification_status": "VERIFIED",
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "HIGH" if tenant.mps > 80 else "STANDARD"},
        "status": "CONNECTED",
        "name_status": "APPROVED",
        "account_mode": "LIVE",
        "messaging_limit_tier": "TIER_1K",
        "is_official_business_account": False,
        "webhook_configuration": {"application": sim.config.webhook_url or ""},
    }
    phone.update(sim.state.phone_overrides.get(tenant.phone_number_id, {}))
    return phone


def waba(sim: Simulator, tenant: Tenant) -> dict:
    """Return every field the simulator knows of a tenant's WABA."""
    return {
        "id": tenant.waba_id,
        "name": f"Alfred {tenant.tenant_id} (simulated)",
        "timezone_id": "1",
        "message_template_namespace": f"sim_{tenant.waba_id}",
        "currency": "USD",
        "account_review_status": "APPROVED",
        "business_verification_status": "verified",
        "country": "US",
        "ownership_type": "SELF",
        "primary_funding_id": "0",
    }


def pick_fields(request: web.Request, obj: dict, default: tuple[str, ...], node: str):
    """Keep the fields asked for (`?fields=a,b`), or answer Meta's error for an unknown one."""
    asked = [f.strip() for f in request.query.get("fields", "").split(",") if f.strip()]
    others = PHONE_OTHER_FIELDS if node == PHONE_NODE else WABA_OTHER_FIELDS
    for name in asked:
        if name not in obj and name not in others:
            return errors.error_response(
                100,
                message=f"(#100) Tried accessing nonexisting field ({name}) on node type ({node})",
            )
    keep = asked or default
    result = {k: obj[k] for k in keep if k in obj}
    result["id"] = obj["id"]  # Graph always answers the node's id
    return result


def _grant(request: web.Request, object_id: str, kind: str) -> Tenant | web.Response:
    sim = sim_of(request)
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    if kind == "phone":
        tenant = sim.by_phone.get(object_id)
        allowed = grants.phone_number_ids
    else:
        tenant = sim.by_waba.get(object_id)
        allowed = grants.waba_ids
    if tenant is None or object_id not in allowed:
        return errors.unknown_object(object_id, request.method.lower())
    return tenant


def _phone_handler(phone_number_id: str):
    async def get_phone_number(request: web.Request) -> web.Response:
        """GET /{version}/{phone-number-id}: the number's status, quality and throughput."""
        tenant = _grant(request, phone_number_id, "phone")
        if isinstance(tenant, web.Response):
            return tenant
        picked = pick_fields(
            request,
            phone_number(sim_of(request), tenant),
            PHONE_DEFAULT_FIELDS,
            PHONE_NODE,
        )
        return picked if isinstance(picked, web.Response) else web.json_response(picked)

    return get_phone_number


def _waba_handler(waba_id: str):
    async def get_waba(request: web.Request) -> web.Response:
        """GET /{version}/{waba-id}: the WhatsApp Business Account."""
        tenant = _grant(request, waba_id, "waba")
        if isinstance(tenant, web.Response):
            return tenant
        picked = pick_fields(request, waba(sim_of(request), tenant), WABA_DEFAULT_FIELDS, WABA_NODE)
        return picked if isinstance(picked, web.Response) else web.json_response(picked)

    return get_waba


async def phone_numbers(request: web.Request) -> web.Response:
    """GET /{version}/{waba-id}/phone_numbers: the WABA's numbers, with Graph's paging."""
    tenant = _grant(request, request.match_info["waba_id"], "waba")
    if isinstance(tenant, web.Response):
        return tenant
    sim = sim_of(request)
    data = []
    for other in sim.config.tenants.values():
        if other.waba_id == tenant.waba_id:
            picked = pick_fields(
                request,
                phone_number(sim, other),
                PHONE_DEFAULT_FIELDS,
                PHONE_NODE,
            )
            if isinstance(picked, web.Response):
                return picked
            data.append(picked)
    cursors = {"before": "QVFIU0", "after": "QVFIU0"}
    return web.json_response({"data": data, "paging": {"cursors": cursors}})


def _app(sim: Simulator, override: str | None) -> dict:
    cfg = sim.config
    item: dict = {
        "whatsapp_business_api_data": {
            "link": f"https://www.facebook.com/games/?app_id={cfg.app_id}",
            "name": "Alfred (simulated)",
            "id": cfg.app_id,
        }
    }
    if override:
        item["override_callback_uri"] = override
    return item


async def get_subscribed_apps(request: web.Request) -> web.Response:
    """GET /{version}/{waba-id}/subscribed_apps: `data` is empty when our app is unsubscribed."""
    tenant = _grant(request, request.match_info["waba_id"], "waba")
    if isinstance(tenant, web.Response):
        return tenant
    sim = sim_of(request)
    subs = sim.state.subscriptions
    data = [_app(sim, subs[tenant.waba_id])] if tenant.waba_id in subs else []
    return web.json_response({"data": data})


async def subscribe(request: web.Request) -> web.Response:
    """POST /{version}/{waba-id}/subscribed_apps: subscribe our app (optionally overriding)."""
    tenant = _grant(request, request.match_info["waba_id"], "waba")
    if isinstance(tenant, web.Response):
        return tenant
    body: dict = {}
    try:
        if request.content_type == "application/json" and request.can_read_body:
            body = await request.json() or {}
        elif request.can_read_body:
            body = dict(await request.post())
    except ValueError:
        return errors.error_response(100, details="The request body is not valid JSON.")
    override = body.get("override_callback_uri") or request.query.get("override_callback_uri")
    if override and not (body.get("verify_token") or request.query.get("verify_token")):
        return errors.error_response(100, message="(#100) The parameter verify_token is required.")
    sim_of(request).state.subscriptions[tenant.waba_id] = override or None
    return web.json_response({"success": True})


async def unsubscribe(request: web.Request) -> web.Response:
    """DELETE /{version}/{waba-id}/subscribed_apps: unsubscribe our app."""
    tenant = _grant(request, request.match_info["waba_id"], "waba")
    if isinstance(tenant, web.Response):
        return tenant
    sim_of(request).state.subscriptions.pop(tenant.waba_id, None)
    return web.json_response({"success": True})


async def control(request: web.Request) -> web.Response:
    """POST /_sim/business {"tenant", "subscribed"?, "phone"?}: change what Meta would report."""
    sim = sim_of(request)
    try:
        body = await request.json()
        tenant = sim.config.tenants[body["tenant"]]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "give a JSON object with a known `tenant`"}, status=400)
    phone = body.get("phone") or {}
    unknown = sorted(set(phone) - set(PHONE_KNOBS))
    if unknown:
        return web.json_response({"error": f"unknown phone fields: {unknown}"}, status=400)
    if "subscribed" in body:
        if body["subscribed"]:
            sim.state.subscriptions.setdefault(tenant.waba_id, None)
        else:
            sim.state.subscriptions.pop(tenant.waba_id, None)
    sim.state.phone_overrides.setdefault(tenant.phone_number_id, {}).update(phone)
    return web.json_response(
        {
            "subscribed": tenant.waba_id in sim.state.subscriptions,
            "phone": phone_number(sim, tenant),
        }
    )


def add_routes(app: web.Application, sim: Simulator) -> None:
    """Register the business endpoints; the per-id GETs must precede the media lookup."""
    r = app.router
    r.add_post("/_sim/business", control)
    r.add_get("/{version}/{waba_id}/phone_numbers", phone_numbers)
    r.add_get("/{version}/{waba_id}/subscribed_apps", get_subscribed_apps)
    r.add_post("/{version}/{waba_id}/subscribed_apps", subscribe)
    r.add_delete("/{version}/{waba_id}/subscribed_apps", unsubscribe)
    # One route per configured id: a plain GET /{version}/{id} is the media lookup's.
    for phone_number_id in sim.by_phone:
        r.add_get(f"/{{version}}/{phone_number_id}", _phone_handler(phone_number_id))
    for waba_id in sim.by_waba:
        r.add_get(f"/{{version}}/{waba_id}", _waba_handler(waba_id))
