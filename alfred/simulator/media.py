"""Media: upload to a number, look up the URL, download it with the bearer token.

Meta's media URLs live 5 minutes; here too (`url_ttl_s`). `POST /_sim/media` makes media of
any size, and `POST /_sim/media/faults` spoils the next downloads on purpose: cut short,
corrupted (hash mismatch), answered 500, or their URL already expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from alfred.simulator import errors
from alfred.simulator.runtime import auth_error, authorise, sim_of

MAX_UPLOAD = 100 * 1024 * 1024  # Meta's largest media (documents) is 100 MB
URL_TTL_S = 300.0  # Meta: a media URL is valid for 5 minutes
WRITE_CHUNK = 256 * 1024


@dataclass
class MediaFaults:
    """How the next downloads go wrong: each counter spoils that many, then falls back."""

    url_ttl_s: float = URL_TTL_S
    cut_next: int = 0  # send half the bytes, then close the connection
    corrupt_next: int = 0  # send every byte, one of them flipped
    fail_next: int = 0  # answer 500
    expire_next: int = 0  # answer 404 as for an expired URL
    downloads: int = 0  # downloads served whole

    def take(self, name: str) -> bool:
        """Use up one of the named counter's spoiled downloads, if any remain."""
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


MEDIA_FAULTS = web.AppKey("media_faults", MediaFaults)


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
    expires = int(time.time() + request.app[MEDIA_FAULTS].url_ttl_s)
    url = f"{request.url.origin()}/_media/{media_id}?hash={item['sha256'][:16]}&ext={expires}"
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


async def download(request: web.Request) -> web.StreamResponse:
    """Serve the bytes behind a media URL to a bearer of a token for its number, streamed."""
    found = _owned(request)
    if isinstance(found, web.Response):
        return found
    _, item = found
    faults = request.app[MEDIA_FAULTS]
    expired = float(request.query.get("ext") or 0) < time.time()
    if expired or faults.take("expire_next"):
        return web.Response(status=404, text="URL signature expired")
    if faults.take("fail_next"):
        return web.Response(status=500, text="Internal Server Error")
    data: bytes = item["data"]
    cut, corrupt = faults.take("cut_next"), faults.take("corrupt_next")
    if corrupt:
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    response = web.StreamResponse(headers={"Content-Type": item["mime_type"].split(";")[0]})
    response.content_length = len(data)
    await response.prepare(request)
    end = len(data) // 2 if cut else len(data)
    for start in range(0, end, WRITE_CHUNK):
        await response.write(data[start : min(end, start + WRITE_CHUNK)])
    if cut:
        await asyncio.sleep(0.05)  # let the half reach the client before the connection drops
        if request.transport is not None:
            request.transport.close()
        return response
    faults.downloads += 1
    await response.write_eof()
    return response


async def create(request: web.Request) -> web.Response:
    """POST /_sim/media {"tenant", "size"?, "data"?, "mime_type"?}: media a user could send."""
    sim = sim_of(request)
    spec = await request.json()
    tenant = sim.config.tenants.get(spec.get("tenant", ""))
    if tenant is None:
        return web.json_response({"error": f"unknown tenant {spec.get('tenant')!r}"}, status=400)
    data = spec["data"].encode() if "data" in spec else os.urandom(int(spec.get("size", 1024)))
    media_id = str(3 * 10**15 + sim.state.next_id())
    item = {
        "data": data,
        "mime_type": spec.get("mime_type", "image/jpeg"),
        "sha256": hashlib.sha256(data).hexdigest(),
        "phone_number_id": tenant.phone_number_id,
    }
    sim.state.media[media_id] = item
    return web.json_response(
        {
            "id": media_id,
            "mime_type": item["mime_type"],
            "sha256": item["sha256"],
            "file_size": len(data),
        }  # fmt: skip
    )


async def set_faults(request: web.Request) -> web.Response:
    """POST /_sim/media/faults: spoil the next downloads (see MediaFaults); answers the counters."""
    faults = request.app[MEDIA_FAULTS]
    spec = await request.json()
    for name in ("url_ttl_s", "cut_next", "corrupt_next", "fail_next", "expire_next"):
        if name in spec:
            setattr(faults, name, type(getattr(faults, name))(spec[name]))
    return web.json_response(vars(faults))


def add_routes(app: web.Application) -> None:
    """Register the media endpoints (download first: it must win over /{version}/{id})."""
    app[MEDIA_FAULTS] = MediaFaults()
    app.router.add_get("/_media/{media_id}", download)
    app.router.add_post("/_sim/media", create)
    app.router.add_post("/_sim/media/faults", set_faults)
    app.router.add_post("/{version}/{phone_number_id}/media", upload)


def add_lookup_routes(app: web.Application) -> None:
    """Register GET/DELETE /{version}/{media_id}; last, since it matches any single id."""
    app.router.add_get("/{version}/{media_id}", describe)
    app.router.add_delete("/{version}/{media_id}", delete)
