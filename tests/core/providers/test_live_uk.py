"""NESO Carbon Intensity API against a loopback server serving the recorded responses (national, regional)."""

from __future__ import annotations

import re
from datetime import timedelta

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import UnknownProviderZoneError
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.signal import SignalKind

from .live_api_support import ask, options, recorded, url_of

UK = "uk-carbonintensity"


def provider(server: HTTPServer, now: str) -> UKCarbonIntensityProvider:
    return UKCarbonIntensityProvider(**options(url_of(server), now))


def test_latest_national_prefers_the_actual(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity").respond_with_json(recorded(UK, "intensity"))
    reading = ask(mode, provider(api, "2018-01-20T12:10Z"), "latest", "GB")
    assert reading.value == 263.0
    assert reading.source == "uk (actual)"
    assert reading.kind is SignalKind.AVERAGE
    assert reading.period_start == pd.Timestamp("2018-01-20T12:00Z")


def test_forecast_reads_fw48h_from_the_current_half_hour(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-14T12:00Z/fw48h").respond_with_json(
        recorded(UK, "intensity_fw48h")
    )
    sig = ask(mode, provider(api, "2023-03-14T12:01Z"), "forecast", "GB", None, timedelta(hours=48))
    raw = recorded(UK, "intensity_fw48h")["data"]
    assert len(sig) == 96
    assert sig.values.tolist() == [row["intensity"]["forecast"] for row in raw]
    assert sig.resolution == pd.Timedelta(minutes=30)
    assert sig.start == pd.Timestamp("2023-03-14T12:00Z")


def test_forecast_beyond_48h_is_noted(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-14T12:00Z/fw48h").respond_with_json(
        recorded(UK, "intensity_fw48h")
    )
    sig = ask(mode, provider(api, "2023-03-14T12:01Z"), "forecast", "GB", None, timedelta(hours=72))
    assert len(sig) == 96
    assert any("48 h" in note for note in sig.notes)


def test_a_day_of_history_uses_pt24h_and_keeps_actuals(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-14T12:00Z/pt24h").respond_with_json(
        recorded(UK, "intensity_pt24h")
    )
    start, end = pd.Timestamp("2023-03-13T12:00Z"), pd.Timestamp("2023-03-14T12:00Z")
    sig = ask(mode, provider(api, "2023-03-14T12:01Z"), "history", "GB", start, end)
    raw = recorded(UK, "intensity_pt24h")["data"]
    assert sig.values.tolist() == [row["intensity"]["actual"] for row in raw]
    assert sig.start == start and sig.end == end


def test_long_history_is_split_into_14_day_requests(api: HTTPServer, mode: str) -> None:
    api.expect_request(re.compile(r"^/intensity/[^/]+/[^/]+$")).respond_with_json(
        recorded(UK, "intensity_pt24h")
    )
    start, end = pd.Timestamp("2023-02-20T00:00Z"), pd.Timestamp("2023-03-22T00:00Z")
    sig = ask(mode, provider(api, "2023-03-22T00:00Z"), "history", "GB", start, end)
    assert len(sig) == 48
    paths = [request.path for request, _ in api.log]
    assert paths == [
        "/intensity/2023-02-20T00:00Z/2023-03-06T00:00Z",
        "/intensity/2023-03-06T00:00Z/2023-03-20T00:00Z",
        "/intensity/2023-03-20T00:00Z/2023-03-22T00:00Z",
    ]


def test_regional_by_region_id_and_by_postcode(api: HTTPServer, mode: str) -> None:
    derived = recorded(UK, "regional_regionid_13_derived")
    api.expect_request("/regional/regionid/13").respond_with_json(derived)
    api.expect_request("/regional/postcode/SW1").respond_with_json(derived)
    uk = provider(api, "2020-02-25T12:10Z")
    by_id = ask(mode, uk, "latest", "GB-13")
    by_postcode = ask(mode, uk, "latest", "gb-sw1")
    assert by_id.value == by_postcode.value == 241.0
    assert by_id.source == "uk regional (forecast)"
    assert by_postcode.zone == "GB-SW1"


def test_regional_forecast_path(api: HTTPServer, mode: str) -> None:
    api.expect_request("/regional/intensity/2020-02-25T12:00Z/fw48h/regionid/13").respond_with_json(
        recorded(UK, "regional_regionid_13_derived")
    )
    sig = ask(mode, provider(api, "2020-02-25T12:10Z"), "forecast", "GB-13", None, timedelta(hours=1))
    assert sig.values.tolist() == [241.0]
    assert sig.source == "uk regional"


@pytest.mark.parametrize("zone", ["DE", "GB-99", "GB-", "London"])
def test_zones_outside_gb_are_refused_before_any_request(api: HTTPServer, zone: str) -> None:
    with pytest.raises(UnknownProviderZoneError, match="GB-<region id") as info:
        provider(api, "2023-03-14T12:01Z").latest(zone)
    assert repr(zone) in str(info.value) and "uk" in str(info.value)
    assert api.log == []
