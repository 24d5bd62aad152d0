"""Meta's error catalogue and the Graph API error body built from it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

DOCS_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True)
class MetaError:
    """One row of Meta's error-code table, as the simulator plays it."""

    code: int
    http_status: int
    title: str
    details: str
    # True: Meta accepts the send (200 + wamid) and reports the error in a `failed` status webhook.
    asynchronous: bool = False
    error_type: str = "OAuthException"


# HTTP statuses of the WhatsApp codes are UNVERIFIED against Meta (FACTS F9): mirrors show 400 for
# the throttling codes (heltar.com, developers.aivo.co) and 404 for 132001; Meta says to branch on
# `code`, never on the HTTP status. The asynchronous set are the errors Meta reports per message.
_SYNC = "sync"
_ASYNC = "async"
# fmt: off
_ROWS = (
    (1, 400, "API Unknown", "Invalid request or possible server error."),
    (2, 503, "API Service", "Temporary due to downtime or due to being overloaded."),
    (4, 400, "Application request limit reached", "The app has reached its API call rate limit."),
    (100, 400, "Invalid parameter", "Invalid parameter"),
    (190, 401, "Access token has expired", "Error validating access token."),
    (368, 403, "Temporarily blocked for policies violations",
     "The WhatsApp Business Account has been restricted or disabled."),
    (80007, 400, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    (130429, 400, "Rate limit hit", "Cloud API message throughput has been reached."),
    (131000, 500, "Something went wrong", "Message failed to send due to an unknown error."),
    (131005, 403, "Access denied", "Permission is either not granted or has been removed."),
    (131008, 400, "Required parameter is missing", "The request is missing a required parameter."),
    (131009, 400, "Parameter value is not valid", "One or more parameter values are invalid."),
    (131016, 503, "Service unavailable", "A service is temporarily unavailable."),
    (131026, 200, "Message undeliverable", "Message Undeliverable.", _ASYNC),
    (131047, 200, "Re-engagement message",
     "Message failed to send because more than 24 hours have passed since the customer last "
     "replied to this number.", _ASYNC),
    (131048, 200, "Spam rate limit hit",
     "Message failed to send because there are restrictions on how many messages can be sent "
     "from this phone number.", _ASYNC),
    (131049, 200, "This message was not delivered to maintain healthy ecosystem engagement.",
     "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
     _ASYNC),
    (131053, 200, "Media upload error", "Unable to download the media sent by the business.",
     _ASYNC),
    (131056, 400, "(Business Account, Consumer Account) pair rate limit hit",
     "Message failed to send because there were too many messages sent from this phone number "
     "to the same phone number in a short period of time."),
    (131057, 400, "Account in maintenance mode", "Business Account is in maintenance mode."),
    (132001, 404, "Template name does not exist in the translation",
     "template name does not exist in the translation"),
)
# fmt: on
CATALOGUE: dict[int, MetaError] = {
    row[0]: MetaError(*row[:4], asynchronous=row[4:] == (_ASYNC,)) for row in _ROWS
}


def fbtrace_id() -> str:
    """Return a trace id shaped like Meta's (27 URL-safe characters)."""
    return "A" + secrets.token_urlsafe(20)[:26]


def lookup(code: int) -> MetaError:
    """Return the catalogue row for a code, or a generic synchronous 400 for unknown ones."""
    return CATALOGUE.get(code) or MetaError(code, 400, f"Error {code}", f"Simulated error {code}.")


def error_body(
    code: int,
    *,
    message: str | None = None,
    details: str | None = None,
    subcode: int | None = None,
    error_type: str | None = None,
) -> dict:
    """Build the Graph API `{"error": …}` body for a code."""
    row = lookup(code)
    error: dict = {
        "message": message or f"(#{code}) {row.title}",
        "type": error_type or row.error_type,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or row.details},
        "fbtrace_id": fbtrace_id(),
    }
    # error_subcode is gone from WhatsApp errors since v16.0 (FACTS F9); Graph-level errors keep it.
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def error_response(code: int, *, status: int | None = None, **kwargs) -> web.Response:
    """Answer with Meta's error body and the catalogue's HTTP status."""
    return web.json_response(error_body(code, **kwargs), status=status or lookup(code).http_status)


def unknown_object(object_id: str, method: str = "post") -> web.Response:
    """Answer as Graph does for an id that does not exist or this token may not use."""
    message = (
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read the "
        "Graph API documentation at https://developers.facebook.com/docs/graph-api"
    )
    body = error_body(100, message=message, subcode=33, error_type="GraphMethodException")
    del body["error"]["error_data"]
    return web.json_response(body, status=400)


def token_error(
    reason: str = "Invalid OAuth access token - Cannot parse access token",
) -> web.Response:
    """Answer 401 with code 190 as Graph does for a missing, wrong or expired token."""
    subcode = 463 if "expired" in reason.lower() else None
    body = error_body(190, message=reason, subcode=subcode)
    del body["error"]["error_data"]
    return web.json_response(body, status=401)


def webhook_error(code: int) -> dict:
    """Build the `errors[]` item a `failed` status webhook carries."""
    row = lookup(code)
    return {
        "code": code,
        "title": row.title,
        "message": row.title,
        "error_data": {"details": row.details},
        "href": DOCS_HREF,
    }
