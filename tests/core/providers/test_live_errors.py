"""Every failure a live provider can hit is a typed error naming provider, zone and cause, never the key.

Bodies for Electricity Maps errors, empty data and malformed payloads have no recorded example (see
tests/fixtures/api/SOURCE.md); they are written here. NESO and WattTime error bodies are the recorded ones.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import (
    AuthenticationError,
    EmptyDataError,
    MalformedResponseError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitedError,
    StaleDataError,
    UnknownProviderZoneError,
)
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.http import RETRY_AFTER_CAP
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.providers.watttime import WattTimeProvider

from .live_api_support import (
    ask,
    closed_port_url,
    options,
    recorded,
    url_of,
)

EM_TOKEN = "em-secret-token-77aa"
WT_PASSWORD = "wt-Secret-pass-88bb!"
UK = "uk-carbonintensity"


def em(url: str, now: str = "2018-04-25T18:30Z") -> ElectricityMapsProvider:
    return ElectricityMapsProvider(token=EM_TOKEN, **options(url, now))


def uk(url: str, now: str = "2018-01-20T12:10Z") -> UKCarbonIntensityProvider:
    return UKCarbonIntensityProvider(**options(url, now))


def wt(url: str, now: str = "2022-07-15T00:02Z") -> WattTimeProvider:
    return WattTimeProvider(username="freddo", password=WT_PASSWORD, **options(url, now))


def raised(mode: str, provider: object, method: str, *args: object) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        ask(mode, provider, method, *args)
    return info.value


def assert_names(error: ProviderError, provider: str, zone: str, *cause: str) -> None:
    text = str(error)
    assert provider in text and repr(zone) in text, text
    for word in cause:
        assert word in text, f"{word!r} missing from: {text}"
    for secret in (EM_TOKEN, WT_PASSWORD, recorded("watttime", "login")["token"]):
        assert secret not in text and secret not in repr(error)
    assert error.provider == provider and error.zone == zone


def test_401_bad_key(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"message": f"Invalid auth-token {EM_TOKEN}"}, status=401
    )
    error = raised(mode, em(url_of(api)), "latest", "DE")
    assert isinstance(error, AuthenticationError)
    assert_names(error, "electricitymaps", "DE", "401", "ELECTRICITYMAPS_API_TOKEN")


def test_401_on_watttime_login(api: HTTPServer, mode: str) -> None:
    api.expect_request("/login").respond_with_data("Unauthorized", status=401)
    error = raised(mode, wt(url_of(api)), "latest", "CAISO_NORTH")
    assert isinstance(error, AuthenticationError)
    assert_names(error, "watttime", "CAISO_NORTH", "401", "/login")


def test_missing_credentials_fail_before_any_request(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELECTRICITYMAPS_API_TOKEN", raising=False)
    error = raised(
        "sync", ElectricityMapsProvider(**options(url_of(api), "2018-04-25T18:30Z")), "latest", "DE"
    )
    assert isinstance(error, AuthenticationError)
    assert_names(error, "electricitymaps", "DE", "ELECTRICITYMAPS_API_TOKEN")
    assert api.log == []


@pytest.mark.parametrize(
    ("token", "cause"),
    [
        (EM_TOKEN + "\n", "whitespace"),  # pasted with its newline: requests would call it unreachable
        (" " + EM_TOKEN, "whitespace"),
        (EM_TOKEN[:4] + "\u2019" + EM_TOKEN[4:], "has a non-ASCII character;"),  # a smart quote
        (EM_TOKEN[:4] + "\x00" + EM_TOKEN[4:], "has a control character;"),
    ],
)
def test_unsendable_token_is_an_auth_error_before_any_request(
    api: HTTPServer, mode: str, token: str, cause: str
) -> None:
    provider = ElectricityMapsProvider(token=token, **options(url_of(api), "2018-04-25T18:30Z"))
    error = raised(mode, provider, "latest", "DE")
    assert isinstance(error, AuthenticationError)
    assert_names(error, "electricitymaps", "DE", "token argument or ELECTRICITYMAPS_API_TOKEN", cause)
    assert token not in str(error) and token.strip() not in str(error)
    assert api.log == []


@pytest.mark.parametrize(
    ("username", "password", "cause"),
    [
        (
            "freddo",
            WT_PASSWORD + "\n",
            "password (password argument or WATTTIME_PASSWORD) has a control character",
        ),
        (
            "freddo",
            WT_PASSWORD + "\u20ac",
            "password (password argument or WATTTIME_PASSWORD) has a non-ASCII",
        ),
        ("fr\u20acddo", WT_PASSWORD, "username (username argument or WATTTIME_USERNAME) has a non-ASCII"),
    ],
)
def test_unsendable_watttime_login_is_an_auth_error_before_any_request(
    api: HTTPServer, mode: str, username: str, password: str, cause: str
) -> None:
    provider = WattTimeProvider(username=username, password=password, **options(url_of(api), "2022-07-15"))
    error = raised(mode, provider, "latest", "CAISO_NORTH")
    assert isinstance(error, AuthenticationError)
    assert_names(error, "watttime", "CAISO_NORTH", cause)
    assert password not in str(error) and password.strip() not in str(error)
    assert api.log == []


@pytest.mark.parametrize(
    ("token", "cause"),
    [(None, "'token' is null"), ("", "'token' is empty"), (123, "of type int"), ("tok en\n", "whitespace")],
)
def test_watttime_login_without_a_usable_token_is_malformed(
    api: HTTPServer, mode: str, token: object, cause: str
) -> None:
    api.expect_request("/login").respond_with_json({"token": token})
    error = raised(mode, wt(url_of(api)), "latest", "CAISO_NORTH")
    assert isinstance(error, MalformedResponseError)
    assert_names(error, "watttime", "CAISO_NORTH", "login answered", cause)
    assert [request.path for request, _ in api.log] == ["/login"]  # never sent on as "Bearer None"


def test_403_plan_does_not_cover_it(api: HTTPServer, mode: str) -> None:
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_request("/v3/forecast").respond_with_json(
        recorded("watttime", "error_invalid_scope"), status=403
    )
    error = raised(mode, wt(url_of(api)), "latest", "PJM_DC")
    assert isinstance(error, AuthenticationError)
    assert_names(error, "watttime", "PJM_DC", "403", "Invalid scope")


def test_unknown_zone_404(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"error": "Zone 'XX' does not exist"}, status=404
    )
    error = raised(mode, em(url_of(api)), "latest", "XX")
    assert isinstance(error, UnknownProviderZoneError)
    assert_names(error, "electricitymaps", "XX", "404", "does not exist")


def test_unknown_postcode_in_the_apis_own_error_body(api: HTTPServer, mode: str) -> None:
    body = {"error": {"code": "400 Bad Request", "message": "Please enter a valid postcode"}}  # NESO's shape
    api.expect_request("/regional/postcode/ZZ9").respond_with_json(body, status=400)
    error = raised(mode, uk(url_of(api)), "latest", "GB-ZZ9")
    assert isinstance(error, UnknownProviderZoneError)
    assert_names(error, "uk", "GB-ZZ9", "400 Bad Request", "valid postcode")


def test_other_400s_carry_the_apis_words(api: HTTPServer, mode: str) -> None:
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_request("/v3/forecast").respond_with_json(recorded("watttime", "error"), status=400)
    error = raised(mode, wt(url_of(api)), "latest", "CAISO_NORTH")
    assert isinstance(error, ProviderRequestError)
    assert_names(error, "watttime", "CAISO_NORTH", "INVALID_QUERY_PARAMS", "invalid parameters")


def test_429_waits_the_stated_time_then_succeeds(api: HTTPServer, mode: str) -> None:
    api.expect_oneshot_request("/intensity").respond_with_data("", status=429, headers={"Retry-After": "1"})
    api.expect_request("/intensity").respond_with_json(recorded(UK, "intensity"))
    began = time.monotonic()
    reading = ask(mode, uk(url_of(api)), "latest", "GB")
    waited = time.monotonic() - began
    assert reading.value == 263.0
    assert waited >= 1.0, f"Retry-After: 1 was not honoured (took {waited:.2f}s)"
    assert waited < 4.0
    assert [response.status_code for _, response in api.log] == [429, 200]


def test_429_asking_longer_than_allowed_is_an_error_at_once(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    began = time.monotonic()
    error = raised(mode, uk(url_of(api)), "latest", "GB")
    assert time.monotonic() - began < 1.0
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 3600.0
    assert_names(error, "uk", "GB", "429", "rate limited")


@pytest.mark.parametrize(
    ("header", "said", "kept"),
    [
        ({}, "the API did not say when to retry", None),
        ({"Retry-After": "9" * 400}, "retry after 7.0 days or more", RETRY_AFTER_CAP),
        ({"Retry-After": "3600"}, "retry after 60 min", 3600.0),
    ],
)
def test_429_says_when_to_retry_in_words(
    api: HTTPServer, mode: str, header: dict[str, str], said: str, kept: float | None
) -> None:
    api.expect_request("/intensity").respond_with_data("slow down", status=429, headers=header)
    error = raised(mode, uk(url_of(api)), "latest", "GB")
    assert isinstance(error, RateLimitedError) and error.retry_after == kept
    assert said in str(error) and "None" not in str(error) and "inf" not in str(error)


def test_500_then_success(api: HTTPServer, mode: str) -> None:
    api.expect_oneshot_request("/intensity").respond_with_json(recorded(UK, "error_500"), status=500)
    api.expect_request("/intensity").respond_with_json(recorded(UK, "intensity"))
    assert ask(mode, uk(url_of(api)), "latest", "GB").value == 263.0
    assert [response.status_code for _, response in api.log] == [500, 200]


def test_500_that_persists_is_unavailable_after_retries(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity").respond_with_json(recorded(UK, "error_500"), status=500)
    error = raised(mode, uk(url_of(api)), "latest", "GB")
    assert isinstance(error, ProviderUnavailableError)
    assert_names(error, "uk", "GB", "500 Internal Server Error")
    assert len(api.log) == 3  # first try + 2 retries


def test_connection_refused(mode: str) -> None:
    error = raised(mode, em(closed_port_url()), "latest", "DE")
    assert isinstance(error, ProviderUnavailableError)
    assert_names(error, "electricitymaps", "DE", "connection refused", "3 attempts")


def test_malformed_json(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity").respond_with_data("<html>maintenance</html>", content_type="text/html")
    error = raised(mode, uk(url_of(api)), "latest", "GB")
    assert isinstance(error, MalformedResponseError)
    assert_names(error, "uk", "GB", "malformed JSON", "maintenance")


def test_json_of_the_wrong_shape(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json({"zone": "DE", "value": 302})
    error = raised(mode, em(url_of(api)), "latest", "DE")
    assert isinstance(error, MalformedResponseError)
    assert_names(error, "electricitymaps", "DE", "carbonIntensity")


def test_moer_in_units_we_do_not_convert(api: HTTPServer, mode: str) -> None:
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_request("/v3/forecast").respond_with_json(recorded("watttime", "signal-index"))  # percentile
    error = raised(mode, wt(url_of(api), now="2024-06-18T18:42Z"), "latest", "PSCO")
    assert isinstance(error, MalformedResponseError)
    assert_names(error, "watttime", "PSCO", "percentile")


def test_empty_data(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-14T12:00Z/fw48h").respond_with_json({"data": []})
    error = raised(mode, uk(url_of(api), "2023-03-14T12:01Z"), "forecast", "GB", None, timedelta(hours=24))
    assert isinstance(error, EmptyDataError)
    assert_names(error, "uk", "GB", "no forecast data")


def test_null_current_value_is_empty_data(api: HTTPServer, mode: str) -> None:
    latest = {**recorded("electricitymaps", "carbon-intensity_latest"), "carbonIntensity": None}
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json(latest)
    error = raised(mode, em(url_of(api)), "latest", "DE")
    assert isinstance(error, EmptyDataError)
    assert_names(error, "electricitymaps", "DE", "null")


def test_stale_latest_value(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        recorded("electricitymaps", "carbon-intensity_latest")
    )
    error = raised(mode, em(url_of(api), now="2018-04-26T18:30Z"), "latest", "DE")
    assert isinstance(error, StaleDataError)
    assert_names(
        error,
        "electricitymaps",
        "DE",
        "stale",
        "2018-04-25T18:07:00.350000+00:00",
        "24.4 h old",
        "limit 3.0 h",
    )


def test_stale_forecast(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-20T12:00Z/fw48h").respond_with_json(
        recorded(UK, "intensity_fw48h")
    )
    error = raised(mode, uk(url_of(api), "2023-03-20T12:01Z"), "forecast", "GB", None, timedelta(hours=24))
    assert isinstance(error, StaleDataError)
    assert_names(error, "uk", "GB", "stale forecast", "2023-03-16T12:00:00+00:00")


def test_secrets_never_show_in_repr_or_logs(
    api: HTTPServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_oneshot_request("/v3/forecast").respond_with_data("", status=503)
    api.expect_request("/v3/forecast").respond_with_json(recorded("watttime", "forecast"))
    api.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        recorded("electricitymaps", "carbon-intensity_latest")
    )
    watttime, emaps = wt(url_of(api)), em(url_of(api), now="2018-04-25T18:30Z")
    ask(mode, watttime, "latest", "CAISO_NORTH")
    ask(mode, emaps, "latest", "DE")
    token = recorded("watttime", "login")["token"]
    shown = caplog.text + repr(watttime) + repr(emaps) + str(vars(watttime)) + str(vars(emaps))
    for secret in (EM_TOKEN, WT_PASSWORD, token):
        assert secret not in shown
    assert "credentials=***" in repr(watttime)
