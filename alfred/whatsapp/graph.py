"""A thin Graph API client: every call goes through one _request seam that raises typed errors."""

from __future__ import annotations

import json as jsonlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from alfred.config import Secret
from alfred.whatsapp.errors import GraphError, MetaUnavailable, NetworkError, error_from_response

log = logging.getLogger(__name__)

# Query parameters that carry secrets; urllib3 logs request lines at DEBUG, query included.
_SECRET_PARAMS = re.compile(
    r"((?:access_token|client_secret|fb_exchange_token|input_token)=)[^&\s\"']+"
)
_REDACTED = "**********"


class _RedactSecrets(logging.Filter):
    """Blank secret query parameters in urllib3's request-line log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_PARAMS.sub(rf"\1{_REDACTED}", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets())


class GraphResponse(dict):
    """A Graph API JSON object that also remembers its HTTP status."""

    http_status: int = 200


@dataclass(frozen=True)
class SendResult:
    """What Meta answered to an accepted send: the wamid and whom it resolved the user to."""

    wamid: str
    http_status: int
    response: dict[str, Any] = field(repr=False)
    input: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    message_status: str | None = None


def _was_never_sent(exc: requests.ConnectionError) -> bool:
    """Tell a failure to connect (nothing sent) from a reset after sending (maybe delivered)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None) if isinstance(inner, MaxRetryError) else inner
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class GraphClient:
    """One pooled HTTP session to the Graph API, shared by every tenant (tokens are per call)."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        pool_maxsize: int = 64,
    ):
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.timeout = timeout
        self.session = requests.Session()
        # The environment (proxies, CA bundle) is read once here, not on every call: requests
        # re-reads it per request otherwise, a twentieth of a send's CPU.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        # No transport retries: a re-sent POST may duplicate a message; callers decide.
        self._default_headers = dict(self.session.headers)  # User-Agent, Accept-Encoding, …
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        _install_log_redaction()

    def __repr__(self) -> str:
        return f"GraphClient({self.base_url!r}, {self.version!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        token: Secret | None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> GraphResponse:
        """Call the Graph API; return the JSON body or raise a GraphError subclass."""
        path = path.lstrip("/")
        url = f"{self.base_url}/{self.version}/{path}"
        secrets = [token.reveal()] if token else []
        query = {}
        for key, value in (params or {}).items():
            if isinstance(value, Secret):
                secrets.append(value.reveal())
                value = value.reveal()
            query[key] = value
        headers = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
        where = f"{method} /{path}"  # never the query string: it may hold secrets
        try:
            # Prepared here and handed to Session.send, not Session.request: the session's
            # per-call merging (settings, cookies, hooks) was a seventh of a send's time, and
            # a Graph call needs none of it beyond the default headers, merged once.
            prepared = requests.Request(
                method,
                url,
                headers={**self._default_headers, **headers},
                json=json,
                params=query or None,
                data=data,
                files=files,
            ).prepare()
            response = self.session.send(prepared, timeout=self.timeout)
        except requests.ConnectionError as exc:
            # `from None`: the requests exception's text holds the full URL, query and all.
            never_sent = _was_never_sent(exc)
            what = "could not connect" if never_sent else "connection lost"
            raise NetworkError(
                f"{where}: {what} ({type(exc).__name__})", may_have_been_delivered=not never_sent
            ) from None
        except requests.Timeout as exc:
            raise NetworkError(
                f"{where}: no answer within {self.timeout[1]} s ({type(exc).__name__})",
                may_have_been_delivered=True,
            ) from None
        except requests.RequestException as exc:
            raise NetworkError(
                f"{where}: {type(exc).__name__}", may_have_been_delivered=True
            ) from None
        body = _parse(response, secrets)
        if not 200 <= response.status_code < 300:
            error = error_from_response(response.status_code, body)
            log.info("graph error %s: %r", where, error)
            raise error
        if not isinstance(body, dict):
            raise MetaUnavailable(
                f"{where}: HTTP {response.status_code} with a body that is not a JSON object",
                http_status=response.status_code,
                may_have_been_delivered=True,
            )
        result = GraphResponse(body)
        result.http_status = response.status_code
        return result

    # --- messages ---------------------------------------------------------------------------

    def send_message(self, phone_number_id: str, token: Secret, body: dict) -> SendResult:
        """POST a message body (from validate_message) and return Meta's wamid."""
        response = self._request("POST", f"{phone_number_id}/messages", token=token, json=body)
        messages = response.get("messages") or [{}]
        contacts = response.get("contacts") or [{}]
        wamid = messages[0].get("id") if isinstance(messages[0], dict) else None
        if not wamid:
            raise MetaUnavailable(
                "send answered 2xx without a message id",
                http_status=response.http_status,
                may_have_been_delivered=True,
            )
        contact = contacts[0] if isinstance(contacts[0], dict) else {}
        return SendResult(
            wamid=wamid,
            http_status=response.http_status,
            response=dict(response),
            input=contact.get("input"),
            wa_id=contact.get("wa_id"),
            user_id=contact.get("user_id"),
            message_status=messages[0].get("message_status"),
        )

    def mark_as_read(
        self, phone_number_id: str, token: Secret, message_id: str, typing_indicator: bool = False
    ) -> bool:
        """Mark an inbound message read, optionally showing a typing indicator for up to 25 s."""
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing_indicator:
            body["typing_indicator"] = {"type": "text"}
        response = self._request("POST", f"{phone_number_id}/messages", token=token, json=body)
        return bool(response.get("success"))

    # --- media ------------------------------------------------------------------------------

    def upload_media(
        self, phone_number_id: str, token: Secret, content: bytes, mime_type: str, filename: str
    ) -> str:
        """Upload a file for later sends by id; return the media id."""
        response = self._request(
            "POST",
            f"{phone_number_id}/media",
            token=token,
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        return str(response["id"])

    def get_media_url(self, media_id: str, token: Secret) -> dict:
        """Return a media object's short-lived download URL, mime_type, sha256 and file_size."""
        return self._request("GET", media_id, token=token)

    # --- templates --------------------------------------------------------------------------

    def list_templates(self, waba_id: str, token: Secret, *, max_pages: int = 50) -> list[dict]:
        """Return every message template of a WABA, following the paging cursors."""
        templates: list[dict] = []
        params: dict[str, Any] = {"limit": 100}
        for _ in range(max_pages):
            page = self._request("GET", f"{waba_id}/message_templates", token=token, params=params)
            templates.extend(page.get("data") or [])
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            # The cursor, not paging.next: that URL may repeat a token passed in the query.
            params = {"limit": 100, "after": after}
        return templates

    def create_template(self, waba_id: str, token: Secret, template: dict) -> dict:
        """Submit a template for review; return Meta's id, status and category."""
        return self._request("POST", f"{waba_id}/message_templates", token=token, json=template)

    # --- business management (what `doctor` reads) -------------------------------------------

    def get_node(self, node_id: str, token: Secret, fields: tuple[str, ...] = ()) -> dict:
        """Return a Graph node (a phone number, a WABA), with only `fields` if given."""
        params = {"fields": ",".join(fields)} if fields else None
        return self._request("GET", node_id, token=token, params=params)

    def subscribed_apps(self, waba_id: str, token: Secret) -> list[dict]:
        """Return the apps subscribed to a WABA's webhooks (empty: none is)."""
        return self._request("GET", f"{waba_id}/subscribed_apps", token=token).get("data") or []

    # --- tokens -----------------------------------------------------------------------------

    def debug_token(self, input_token: Secret, app_token: Secret) -> dict:
        """Return the debug_token data (is_valid, expires_at, scopes, …) of a token."""
        # The app token in the query, not a header: an app secret may hold non-ASCII
        # characters, which a header cannot carry (latin-1) but a URL can (percent-encoded).
        response = self._request(
            "GET",
            "debug_token",
            token=None,
            params={"input_token": input_token, "access_token": app_token},
        )
        return response.get("data") or {}

    def exchange_token(
        self, app_id: str, app_secret: Secret, token: Secret
    ) -> tuple[Secret, int | None]:
        """Exchange a token for a long-lived one; return it and its lifetime in seconds."""
        response = self._request(
            "GET",
            "oauth/access_token",
            token=None,
            params={
                "grant_type": "fb_exchange_token",
                "client_id": app_id,
                "client_secret": app_secret,
                "fb_exchange_token": token,
            },
        )
        new_token = response.get("access_token")
        if not new_token:
            raise GraphError(
                "token exchange answered without an access_token", http_status=response.http_status
            )
        expires_in = response.get("expires_in")
        return Secret(str(new_token)), int(expires_in) if expires_in is not None else None


def _parse(response: requests.Response, secrets: list[str]) -> object:
    """Decode the body as JSON if it is JSON, else as text, with any secret blanked out."""
    text = response.text
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    if not text.strip():
        return None
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text
