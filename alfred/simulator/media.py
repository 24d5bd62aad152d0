"""Media: upload to a number, look up the URL, download it with the bearer token."""

from __future__ import annotations

import hashlib
import secrets

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import auth_error, authorise, sim_of

MAX_UPLOAD = 100 * 1024 * 1024  # Meta's largest media (documents) is 100 MB


async def upload(request: web.Request) -> web.Response:
    """Store a multipart upload (`file`, `type`, `messaging_product`) and return its id."""
    sim = sim_of(request)
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    phone_number_id = request.match_info["phone_number_id"]
    if phone_number_id not in sim.by_phone or phone_number_id not in grants.phone_number_ids:
        return errors.unknown_object(phone_number_id)
    fields: dict[str, str] = {}
    data, mime = b"", None
    if not request.content_type.startswith("multipart/"):
        return errors.error_response(100, details="Upload the file as multipart/form-data.")
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":
            data = await part.read()
            mime = part.headers.get("Content-Type")
        elif part.name:
            fields[part.name] = await part.text()
    if fields.get("messaging_product") != "whatsapp":
        return errors.error_response(
            100, message="(#100) The parameter messaging_product is required."
        )
    if not data:
        return errors.error_response(100, message="(#100) The parameter file is required.")
    media_id = str(10**15 + secrets.randbelow(9 * 10**15))
    sim.state.media[media_id] = {
        "data": data,
        "mime_type": fields.get("type") or mime or "application/octet-stream",
        "sha256": hashlib.sha256(data).hexdigest(),
        "phone_number_id": phone_number_id,
    }
    return web.json_response({"id": media_id})


def _owned(request: web.Request) -> tuple[str, dict] | web.Response:
    sim = sim_of(request)
    grants = authorise(request)
    if grants is None:
        return auth_error(request)
    media_id = request.match_info["media_id"]
    item = sim.state.media.get(media_id)
    if item is None or item["phone_number_id"] not in grants.phone_number_ids:
        return errors.unknown_object(media_id, request.method.lower())
    return media_id, item


async def describe(request: web.Request) -> web.Response:
    """Return the media's short-lived URL, type, hash and size."""
    found = _owned(request)
    if isinstance(found, web.Response):
        return found
    media_id, item = found
    url = f"{request.url.origin()}/_media/{media_id}?hash={item['sha256'][:16]}"
    return web.json_response(
        {
            "messaging_product": "whatsapp",
            "url": url,
            "mime_type": item["mime_type"],
            "sha256": item["sha256"],
            "file_size": len(item["data"]),
            "id": media_id,
        }
    )


async def delete(request: web.Request) -> web.Response:
    """Delete an uploaded media object."""
    found = _owned(request)
    if isinstance(found, web.Response):
        return found
    sim_of(request).state.media.pop(found[0], None)
    return web.json_response({"success": True})


async def download(request: web.Request) -> web.Response:
    """Serve the bytes behind a media URL to a bearer of a token for its number."""
    found = _owned(request)
    if isinstance(found, web.Response):
        return found
    _, item = found
    return web.Response(body=item["data"], content_type=item["mime_type"].split(";")[0])


def add_routes(app: web.Application) -> None:
    """Register the media endpoints (download first: it must win over /{version}/{id})."""
    app.router.add_get("/_media/{media_id}", download)
    app.router.add_post("/{version}/{phone_number_id}/media", upload)


def add_lookup_routes(app: web.Application) -> None:
    """Register GET/DELETE /{version}/{media_id}; last, since it matches any single id."""
    app.router.add_get("/{version}/{media_id}", describe)
    app.router.add_delete("/{version}/{media_id}", delete)
