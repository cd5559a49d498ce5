"""Electricity Maps v3 against a loopback server serving the recorded (docs) responses, both transports."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.signal import SignalKind

from .live_api_support import ask, options, recorded, url_of

TOKEN = "em-test-token-4f1c"
EM = "electricitymaps"


def provider(server: HTTPServer, now: str) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(token=TOKEN, **options(url_of(server), now))


def test_latest_reads_value_time_and_labels_average(api: HTTPServer, mode: str) -> None:
    api.expect_request(
        "/v3/carbon-intensity/latest", query_string={"zone": "DE"}, headers={"auth-token": TOKEN}
    ).respond_with_json(recorded(EM, "carbon-intensity_latest"))
    reading = ask(mode, provider(api, "2018-04-25T18:30Z"), "latest", "de")
    assert reading.value == 302.0
    assert reading.zone == "DE"
    assert reading.period_start == pd.Timestamp("2018-04-25T18:07:00.350Z")
    assert reading.kind is SignalKind.AVERAGE
    assert reading.source == "electricitymaps"


def test_recent_history_uses_the_history_endpoint(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/history", query_string={"zone": "DE"}).respond_with_json(
        recorded(EM, "carbon-intensity_history")
    )
    sig = ask(
        mode,
        provider(api, "2021-08-19T12:30Z"),
        "history",
        "DE",
        pd.Timestamp("2021-08-18T13:00Z"),
        pd.Timestamp("2021-08-19T14:00Z"),
    )
    assert sig.values.tolist() == [413.0, 338.0]
    assert sig.resolution == pd.Timedelta(hours=1)
    assert str(sig.values.index.tz) == "UTC"


def test_older_history_walks_past_range_in_ten_day_windows(api: HTTPServer, mode: str) -> None:
    api.expect_request("/v3/carbon-intensity/past-range").respond_with_json(
        recorded(EM, "carbon-intensity_past-range")
    )
    start, end = pd.Timestamp("2019-05-01T00:00Z"), pd.Timestamp("2019-05-26T00:00Z")
    sig = ask(mode, provider(api, "2024-01-01T00:00Z"), "history", "DE", start, end)
    assert sig.values.tolist() == [339.0, 317.0, 305.0]
    spans = []
    for request, _ in api.log:
        query = parse_qs(request.query_string.decode())
        spans.append((pd.Timestamp(query["start"][0]), pd.Timestamp(query["end"][0])))
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(hi - lo <= timedelta(days=10) for lo, hi in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert len(spans) == 3


def test_forecast_is_clipped_to_the_horizon(api: HTTPServer, mode: str) -> None:
    api.expect_request(
        "/v3/carbon-intensity/forecast", query_string={"zone": "DK-DK2", "horizonHours": "48"}
    ).respond_with_json(recorded(EM, "carbon-intensity_forecast"))
    sig = ask(mode, provider(api, "2018-11-26T17:25Z"), "forecast", "DK-DK2", None, timedelta(hours=48))
    # the recording's third point (2018-11-28T17:00Z) lies exactly at the 48 h edge and is excluded
    assert sig.values.tolist() == [326.0, 297.0]
    assert sig.issued_at == pd.Timestamp("2018-11-26T17:25:24.685Z")
    assert sig.kind is SignalKind.AVERAGE


def test_base_url_and_token_come_from_the_environment(
    api: HTTPServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBON_AWARE_ELECTRICITYMAPS_URL", url_of(api))
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "from-env-token")
    api.expect_request(
        "/v3/carbon-intensity/latest", headers={"auth-token": "from-env-token"}
    ).respond_with_json(recorded(EM, "carbon-intensity_latest"))
    opts = options("unused", "2018-04-25T18:30Z")
    del opts["base_url"]
    reading = ask(mode, ElectricityMapsProvider(**opts), "latest", "DE")
    assert reading.value == 302.0
