"""Graph API errors as a class tree keyed by Meta's error codes.

Meta asks integrators to branch on ``error.code`` and ``error.error_data.details``, not on titles
or HTTP statuses (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/
error-codes). The tree splits on the one question a sender asks: may this message be tried again?
``TransientError`` subclasses may; ``PermanentError`` subclasses may not. The code table and its
sources are in docs/outbound-errors.md.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GraphError(Exception):
    """A Graph API call failed; ``code`` is Meta's error code when Meta sent one."""

    retryable: ClassVar[bool] = False
    reason: ClassVar[str] = "unknown_error"
    min_retry_delay_s: ClassVar[float | None] = None
    # The tenant's token must be refreshed before anything else is sent with it.
    refresh_token: ClassVar[bool] = False
    # Nothing more should be sent for this tenant until a person looks (policy block, payment).
    halts_tenant: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = None,
        http_status: int | None = None,
        error_type: str | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        may_have_been_delivered: bool = False,
    ):
        # Only the message goes to Exception.args so Celery can rebuild the class as cls(message).
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        # True where Meta may have accepted the request although we saw no answer (read timeout).
        self.may_have_been_delivered = may_have_been_delivered

    def __str__(self) -> str:
        head = f"({self.code}) " if self.code is not None else ""
        tail = f": {self.details}" if self.details and self.details != self.message else ""
        status = f" [HTTP {self.http_status}]" if self.http_status is not None else ""
        return f"{head}{self.message or self.reason}{tail}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"reason={self.reason!r}, message={self.message!r}, fbtrace_id={self.fbtrace_id!r})"
        )

    def as_record(self) -> dict[str, Any]:
        """Return the error as a JSON-serialisable dict for records and send_failed events."""
        return {
            "code": self.code,
            "http_status": self.http_status,
            "reason": self.reason,
            "retryable": self.retryable,
            "message": self.message,
            "details": self.details,
            "fbtrace_id": self.fbtrace_id,
        }


# --- may be retried ---------------------------------------------------------------------------


class TransientError(GraphError):
    """The same request may succeed later."""

    retryable = True
    reason = "transient_error"


class ThrottlingError(TransientError):
    """A rate limit was hit; slow down and retry."""

    reason = "rate_limited"


class RateLimitHit(ThrottlingError):
    """130429: the number's messages-per-second throughput was exceeded (FACTS F4)."""

    reason = "rate_limited"
    min_retry_delay_s = 1.0


class PairRateLimitHit(ThrottlingError):
    """131056: too many messages to the same user; Meta allows one per 6 s per pair (FACTS F5)."""

    reason = "pair_rate_limited"
    min_retry_delay_s = 6.0


class AppRateLimit(ThrottlingError):
    """4, 17, 32, 613, 80007, 133016: the app's or WABA's hourly call budget is spent."""

    reason = "app_rate_limited"
    min_retry_delay_s = 60.0


class SpamRateLimit(ThrottlingError):
    """131048: the number is restricted because earlier messages were blocked or reported.

    Meta's advice is to check the number's quality rating; a quick retry will fail again, so the
    delay is long and a sender's retry budget ends it as ``send_failed``.
    """

    reason = "spam_rate_limited"
    min_retry_delay_s = 300.0


class MetaUnavailable(TransientError):
    """1, 2, 131000, 131016, 131057, or an HTTP 5xx without a code: Meta says try again."""

    reason = "meta_unavailable"


class MediaFetchFailed(TransientError):
    """131053: Meta could not fetch or upload the message's media (Courier retries it)."""

    reason = "media_error"


class NetworkError(TransientError):
    """No answer from Meta: connect timeout, connection refused, read timeout, connection reset.

    A read timeout or a reset after the request was written may mean that Meta accepted the
    message and only the answer was lost; ``may_have_been_delivered`` says so, and a sender
    that retries should expect a possible duplicate.
    """

    reason = "network_error"


# --- never retried -----------------------------------------------------------------------------


class PermanentError(GraphError):
    """The same request will fail again; record it and move on."""

    retryable = False
    reason = "permanent_error"


class ReEngagementRequired(PermanentError):
    """131047: outside the 24 h customer service window only a template may be sent (F11)."""

    reason = "outside_customer_service_window"


class Undeliverable(PermanentError):
    """131026 (and 131030, 131050, 130472, 131049): Meta will not deliver to this user."""

    reason = "undeliverable"


class RecipientNotAllowed(Undeliverable):
    """131030: a test number may only message the numbers on its allowed list."""

    reason = "recipient_not_allowed"


class UserOptedOut(Undeliverable):
    """131050: the user stopped marketing messages from this business."""

    reason = "user_opted_out"


class MarketingLimit(Undeliverable):
    """131049: per-user marketing limit; pywa: do not resend within 24 h, so fail this message."""

    reason = "marketing_limit"


class InvalidParameter(PermanentError):
    """100, 131008, 131009, 131021, 131051, 131062, 135000: the request itself is wrong."""

    reason = "invalid_parameter"


class TemplateError(PermanentError):
    """132000 series: the template is missing, unapproved, paused, or its parameters mismatch."""

    reason = "template_error"


class TemporarilyBlocked(PermanentError):
    """368, 131031, 130497: the account is restricted for policy reasons; stop and alert."""

    reason = "temporarily_blocked"
    halts_tenant = True


class PaymentIssue(PermanentError):
    """131042: the account's payment method has a problem."""

    reason = "payment_issue"
    halts_tenant = True


class AccessTokenError(PermanentError):
    """190, 0, 3, 10, 200-299, 131005, or HTTP 401: the token is expired, invalid or lacks rights.

    Not retryable as it stands, but a sender should refresh the tenant's token and may retry
    once with the new one (``refresh_token``).
    """

    reason = "access_token_expired"
    refresh_token = True


_CODES: dict[int, type[GraphError]] = {
    130429: RateLimitHit,
    131056: PairRateLimitHit,
    4: AppRateLimit,
    17: AppRateLimit,
    32: AppRateLimit,
    613: AppRateLimit,
    80007: AppRateLimit,
    133016: AppRateLimit,
    131048: SpamRateLimit,
    1: MetaUnavailable,
    2: MetaUnavailable,
    131000: MetaUnavailable,
    131016: MetaUnavailable,
    131057: MetaUnavailable,
    131053: MediaFetchFailed,
    131047: ReEngagementRequired,
    131026: Undeliverable,
    130472: Undeliverable,
    131030: RecipientNotAllowed,
    131050: UserOptedOut,
    131049: MarketingLimit,
    100: InvalidParameter,
    131008: InvalidParameter,
    131009: InvalidParameter,
    131021: InvalidParameter,
    131051: InvalidParameter,
    131062: InvalidParameter,
    135000: InvalidParameter,
    368: TemporarilyBlocked,
    131031: TemporarilyBlocked,
    130497: TemporarilyBlocked,
    131042: PaymentIssue,
    190: AccessTokenError,
    0: AccessTokenError,
    3: AccessTokenError,
    10: AccessTokenError,
    131005: AccessTokenError,
}


def class_for_code(code: int | None, http_status: int | None = None) -> type[GraphError]:
    """Pick the class for a Meta code, falling back on the HTTP status for unknown codes."""
    if code is not None:
        if code in _CODES:
            return _CODES[code]
        if 200 <= code <= 299:
            return AccessTokenError
        if 132000 <= code <= 132999:
            return TemplateError
    if http_status is None:
        # A webhook error with a code we do not know: nothing says a retry would help.
        return PermanentError
    if http_status >= 500:
        return MetaUnavailable
    if http_status == 429:
        return ThrottlingError
    if http_status == 401:
        return AccessTokenError
    if 400 <= http_status < 500:
        return PermanentError
    return GraphError


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        # Some relays (YCloud) pass Meta's code on as a string.
        return int(value.strip())
    return None


def _build(error: dict[str, Any], http_status: int | None) -> GraphError:
    code = _as_int(error.get("code"))
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    message = error.get("message") or error.get("title") or ""
    cls = class_for_code(code, http_status)
    return cls(
        str(message),
        code=code,
        http_status=http_status,
        error_type=error.get("type"),
        details=str(details) if details is not None else None,
        fbtrace_id=error.get("fbtrace_id"),
    )


def error_from_response(http_status: int, body: object) -> GraphError:
    """Turn a non-2xx Graph response (parsed JSON, raw text, or None) into a typed error."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return _build(error, http_status)
    if isinstance(body, str | bytes) and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        snippet = " ".join(text.split())[:200]
        message = f"HTTP {http_status} with a body that is not a Graph error: {snippet}"
    else:
        message = f"HTTP {http_status} without a Graph error body"
    cls = class_for_code(None, http_status)
    return cls(message, http_status=http_status)


def error_from_webhook(errors: list[dict[str, Any]] | None) -> GraphError:
    """Turn a status webhook's ``errors`` list (an asynchronous failure) into a typed error."""
    first = next((e for e in errors or [] if isinstance(e, dict)), None)
    if first is None:
        return PermanentError("failed status without an error object")
    return _build(first, None)
