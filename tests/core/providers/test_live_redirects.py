"""No credential to a redirected host: two real loopback servers, a 302 from the configured one to the other.

Both transports refuse the redirect (one shared decision, `http.refuse_redirect`), so the second server is
never contacted at all: it sees neither the Electricity Maps `auth-token` nor WattTime's basic auth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import ProviderUnavailableError
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.watttime import WattTimeProvider

from .live_api_support import ask, options, url_of

TOKEN = "em-redirect-secret-token-1234567890abcdef"
PASSWORD = "wt-redirect-secret-password-0987654321"


@pytest.fixture
def elsewhere() -> Iterator[HTTPServer]:
    """A second loopback host, the redirect's target: it records whatever reaches it."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    server.expect_request("/", method="GET").respond_with_data("should never be asked")
    yield server
    server.clear()
    server.stop()


def redirect_everything(api: HTTPServer, target: HTTPServer) -> None:
    api.expect_request(re.compile(r"^/")).respond_with_data(
        "", status=302, headers={"Location": target.url_for("/")}
    )


def test_electricitymaps_token_never_reaches_the_redirect_target(
    api: HTTPServer, elsewhere: HTTPServer, mode: str
) -> None:
    redirect_everything(api, elsewhere)
    provider = ElectricityMapsProvider(token=TOKEN, **options(url_of(api), "2024-06-18T18:40:00Z"))
    with pytest.raises(
        ProviderUnavailableError, match=re.escape(f"HTTP 302 redirect to {url_of(elsewhere)} ")
    ) as raised:
        ask(mode, provider, "latest", "DE")
    assert "not followed" in str(raised.value) and TOKEN not in str(raised.value)
    assert len(api.log) == 1, "a refused redirect is not retried"
    assert api.log[0][0].headers.get("auth-token") == TOKEN  # the configured host did get it
    assert elsewhere.log == []


def test_watttime_password_never_reaches_the_redirect_target(
    api: HTTPServer, elsewhere: HTTPServer, mode: str
) -> None:
    redirect_everything(api, elsewhere)
    provider = WattTimeProvider(
        username="carbon", password=PASSWORD, **options(url_of(api), "2024-06-18T18:40:00Z")
    )
    with pytest.raises(ProviderUnavailableError, match="redirect to") as raised:
        ask(mode, provider, "latest", "CAISO_NORTH")
    assert PASSWORD not in str(raised.value)
    assert api.log and api.log[0][0].authorization is not None  # the login went to the configured host
    assert elsewhere.log == []
