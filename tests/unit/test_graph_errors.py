"""Meta's error bodies become the right class, retry flag and reason."""

from __future__ import annotations

import pickle

import pytest

from alfred.whatsapp import errors as e


def graph_body(code: int, message: str = "msg", details: str | None = "det") -> dict:
    """Build a Graph error body as Meta sends it."""
    error: dict = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


CASES = [
    # code, http status, class, retryable, reason
    (130429, 400, e.RateLimitHit, True, "rate_limited"),
    (131056, 400, e.PairRateLimitHit, True, "pair_rate_limited"),
    (4, 400, e.AppRateLimit, True, "app_rate_limited"),
    (80007, 400, e.AppRateLimit, True, "app_rate_limited"),
    (131048, 400, e.SpamRateLimit, True, "spam_rate_limited"),
    (131000, 500, e.MetaUnavailable, True, "meta_unavailable"),
    (131016, 503, e.MetaUnavailable, True, "meta_unavailable"),
    (131057, 400, e.MetaUnavailable, True, "meta_unavailable"),
    (131053, 400, e.MediaFetchFailed, True, "media_error"),
    (131047, 400, e.ReEngagementRequired, False, "outside_customer_service_window"),
    (131026, 400, e.Undeliverable, False, "undeliverable"),
    (131049, 400, e.MarketingLimit, False, "marketing_limit"),
    (131050, 400, e.UserOptedOut, False, "user_opted_out"),
    (100, 400, e.InvalidParameter, False, "invalid_parameter"),
    (131008, 400, e.InvalidParameter, False, "invalid_parameter"),
    (131009, 400, e.InvalidParameter, False, "invalid_parameter"),
    (131021, 400, e.InvalidParameter, False, "invalid_parameter"),
    (132000, 400, e.TemplateError, False, "template_error"),
    (132001, 404, e.TemplateError, False, "template_error"),
    (132012, 400, e.TemplateError, False, "template_error"),
    (132015, 400, e.TemplateError, False, "template_error"),
    (132069, 400, e.TemplateError, False, "template_error"),
    (368, 403, e.TemporarilyBlocked, False, "temporarily_blocked"),
    (131031, 403, e.TemporarilyBlocked, False, "temporarily_blocked"),
    (190, 401, e.AccessTokenError, False, "access_token_expired"),
    (0, 401, e.AccessTokenError, False, "access_token_expired"),
    (10, 403, e.AccessTokenError, False, "access_token_expired"),
    (3, 500, e.AccessTokenError, False, "access_token_expired"),  # the code wins over HTTP 500
    (250, 403, e.AccessTokenError, False, "access_token_expired"),
    (131042, 400, e.PaymentIssue, False, "payment_issue"),
]


@pytest.mark.parametrize(("code", "status", "cls", "retryable", "reason"), CASES)
def test_code_maps_to_class(code, status, cls, retryable, reason):
    err = e.error_from_response(status, graph_body(code))
    assert type(err) is cls
    assert err.retryable is retryable
    assert isinstance(err, e.TransientError if retryable else e.PermanentError)
    assert err.reason == reason
    assert (err.code, err.http_status, err.details, err.fbtrace_id) == (code, status, "det", "Ab1")
    assert err.error_type == "OAuthException"


def test_pair_rate_limit_asks_for_six_seconds():
    err = e.error_from_response(400, graph_body(131056))
    assert err.min_retry_delay_s == 6.0
    assert isinstance(err, e.ThrottlingError)


def test_expired_token_asks_for_a_refresh_not_a_retry():
    err = e.error_from_response(401, graph_body(190))
    assert err.refresh_token is True
    assert err.retryable is False


def test_policy_block_halts_the_tenant():
    assert e.error_from_response(403, graph_body(368)).halts_tenant is True
    assert e.error_from_response(400, graph_body(131047)).halts_tenant is False


@pytest.mark.parametrize(
    ("status", "cls"),
    [(500, e.MetaUnavailable), (502, e.MetaUnavailable), (429, e.ThrottlingError)],
)
def test_unknown_code_on_5xx_or_429_is_transient(status, cls):
    err = e.error_from_response(status, graph_body(999999))
    assert type(err) is cls
    assert err.retryable


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_unknown_code_on_4xx_is_permanent(status):
    err = e.error_from_response(status, graph_body(999999))
    assert type(err) is e.PermanentError
    assert not err.retryable


def test_unknown_132xxx_is_a_template_error():
    assert type(e.error_from_response(400, graph_body(132999))) is e.TemplateError


@pytest.mark.parametrize("body", [None, "", "<html>Bad Gateway</html>", b"oops", ["list"], {}])
def test_body_without_graph_error_falls_back_on_the_status(body):
    assert type(e.error_from_response(502, body)) is e.MetaUnavailable
    assert type(e.error_from_response(400, body)) is e.PermanentError
    assert type(e.error_from_response(401, body)) is e.AccessTokenError
    err = e.error_from_response(503, body)
    assert err.code is None and err.http_status == 503


def test_code_given_as_a_string_is_understood():
    body = {"error": {"message": "pair", "code": "131056"}}
    assert type(e.error_from_response(400, body)) is e.PairRateLimitHit


def test_webhook_errors_use_the_first_error():
    errors = [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
        },
        {"code": 131000, "title": "Something went wrong"},
    ]
    err = e.error_from_webhook(errors)
    assert type(err) is e.Undeliverable
    assert err.http_status is None
    assert err.details == "Message Undeliverable."


def test_webhook_unknown_code_is_permanent_and_empty_list_too():
    assert type(e.error_from_webhook([{"code": 424242, "title": "new"}])) is e.PermanentError
    assert type(e.error_from_webhook([])) is e.PermanentError
    assert type(e.error_from_webhook([{"code": 131000}])) is e.MetaUnavailable


def test_str_and_repr_and_record():
    err = e.error_from_response(400, graph_body(131047, "Re-engagement message", "24 h passed"))
    assert str(err) == "(131047) Re-engagement message: 24 h passed [HTTP 400]"
    assert repr(err).startswith("ReEngagementRequired(code=131047, http_status=400")
    record = err.as_record()
    assert record["reason"] == "outside_customer_service_window"
    assert record["retryable"] is False


def test_pickles_whole_and_rebuilds_from_its_args():
    # Celery pickles exceptions, or rebuilds them as cls(*args) with the JSON serializer.
    err = e.error_from_response(400, graph_body(131056))
    clone = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(clone) is e.PairRateLimitHit and clone.code == 131056 and clone.details == "det"
    assert type(type(err)(*err.args)) is e.PairRateLimitHit


def test_network_error_is_transient():
    err = e.NetworkError("POST /1/messages: no answer", may_have_been_delivered=True)
    assert err.retryable and err.reason == "network_error" and err.may_have_been_delivered
