"""The sans-IO HTTP pieces: secrets that hide themselves, Retry-After parsing, the backoff schedule."""

from __future__ import annotations

import pandas as pd

from carbon_sensors.providers.http import (
    RETRY_AFTER_CAP,
    Request,
    Response,
    RetryPolicy,
    Secret,
    retry_after_seconds,
)

NOW = pd.Timestamp("2024-06-18T18:40:00Z")


def test_secret_hides_itself_everywhere_but_reveal() -> None:
    secret = Secret("s3cr3t-value")
    request = Request(
        "GET", "http://127.0.0.1/x", (("zone", "DE"),), {"auth-token": secret}, ("user", secret)
    )
    for shown in (repr(secret), str(secret), f"{secret}", repr(request), str(request)):
        assert "s3cr3t-value" not in shown
    assert request.plain_headers()["auth-token"] == "s3cr3t-value"
    assert request.plain_auth() == ("user", "s3cr3t-value")
    assert request.target == "http://127.0.0.1/x?zone=DE"


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("1", NOW) == 1.0
    assert retry_after_seconds("Tue, 18 Jun 2024 18:40:30 GMT", NOW) == 30.0
    assert retry_after_seconds("Tue, 18 Jun 2024 18:39:00 GMT", NOW) == 0.0
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_an_absurd_retry_after_is_capped_and_odd_digits_are_unreadable() -> None:
    assert retry_after_seconds("9" * 400, NOW) == RETRY_AFTER_CAP  # float() alone: inf
    assert retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == RETRY_AFTER_CAP
    assert retry_after_seconds("\u00b2", NOW) is None  # '²' passes str.isdigit, then float() raised


def test_retry_policy_backs_off_on_5xx_and_honours_429() -> None:
    policy = RetryPolicy(retries=3, backoff=0.5, max_backoff=1.5, max_wait=60)
    request = Request("GET", "http://127.0.0.1/x")

    def response(status: int, retry_after: str | None = None) -> Response:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return Response(status, b"", headers, request, NOW)

    assert [policy.delay_after_status(response(503), n) for n in range(4)] == [0.5, 1.0, 1.5, None]
    assert policy.delay_after_status(response(429, "7"), 0) == 7.0
    assert policy.delay_after_status(response(429, "61"), 0) is None  # longer than max_wait: hand it back
    assert policy.delay_after_status(response(404), 0) is None
    assert policy.delay_after_failure(2) == 1.5 and policy.delay_after_failure(3) is None
