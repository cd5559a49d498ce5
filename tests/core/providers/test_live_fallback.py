"""The fallback chain: the second source answers when the first is down, and the answer names it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import FallbackExhaustedError, InvalidInputError
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.fallback import LAST_GOOD, FallbackAnswer, FallbackChain
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.replay import Replay

from .live_api_support import clock, closed_port_url, options, recorded, url_of

NOW = "2018-01-20T12:10Z"


def answer(mode: str, chain: FallbackChain, zone: str) -> FallbackAnswer:
    return chain.answer(zone) if mode == "sync" else asyncio.run(chain.aanswer(zone))


def test_second_source_answers_when_the_first_is_down(
    api: HTTPServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))
    down = ElectricityMapsProvider(token="t0ken-xyz", **options(closed_port_url(), NOW))
    chain = FallbackChain([down, UKCarbonIntensityProvider(**options(url_of(api), NOW))], clock=clock(NOW))
    got = answer(mode, chain, "GB")
    assert got.reading.value == 263.0
    assert got.source == "uk (actual)"
    assert got.fell_back is True
    assert got.age == timedelta(minutes=10)
    assert len(got.failures) == 1 and got.failures[0].startswith("electricitymaps: ProviderUnavailableError")
    assert "answered by uk" in caplog.text
    assert got.to_dict()["answered_by"] == "uk (actual)" and got.to_dict()["age_seconds"] == 600.0


def test_first_source_answers_without_fallback(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))
    uk = UKCarbonIntensityProvider(**options(url_of(api), NOW))
    got = answer(mode, FallbackChain([uk], clock=clock(NOW)), "GB")
    assert got.fell_back is False and got.failures == ()


def test_last_good_value_then_staleness_is_an_error(api: HTTPServer, mode: str) -> None:
    api.expect_oneshot_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))
    uk = UKCarbonIntensityProvider(**{**options(url_of(api), NOW), "ttl": timedelta(0)})
    now = [pd.Timestamp(NOW)]
    chain = FallbackChain([uk, LAST_GOOD], max_age=timedelta(hours=1), clock=lambda: now[0])
    assert answer(mode, chain, "GB").source == "uk (actual)"

    kept = answer(mode, chain, "GB")  # the server now has no handler: 500s, then the kept value
    assert kept.source == "last-good (uk (actual))"
    assert kept.reading.value == 263.0 and kept.fell_back

    now[0] = pd.Timestamp("2018-01-20T13:30Z")
    with pytest.raises(FallbackExhaustedError) as info:
        answer(mode, chain, "GB")
    text = str(info.value)
    assert "'GB'" in text and "uk: ProviderUnavailableError" in text and "last-good: stale" in text


def test_replayed_trace_as_the_last_resort(mode: str) -> None:
    down = UKCarbonIntensityProvider(**options(closed_port_url(), NOW))
    replay = Replay(pd.Timestamp("2023-06-01T12:00Z"), pd.Timestamp.now("UTC"), 1.0)
    chain = FallbackChain([down, TraceProvider(replay=replay)], clock=clock(NOW))
    got = answer(mode, chain, "GB")
    assert got.fell_back and got.reading.replay
    assert "replay" in got.source
    assert got.age < timedelta(hours=1)


def test_forecast_falls_back_with_a_note(api: HTTPServer, mode: str) -> None:
    api.expect_request("/intensity/2023-03-14T12:00Z/fw48h").respond_with_json(
        recorded("uk-carbonintensity", "intensity_fw48h")
    )
    now = "2023-03-14T12:01Z"
    down = ElectricityMapsProvider(token="t0ken-xyz", **options(closed_port_url(), now))
    chain = FallbackChain([down, UKCarbonIntensityProvider(**options(url_of(api), now))], clock=clock(now))
    start = pd.Timestamp("2023-03-14T12:00Z")
    sig = chain.forecast("GB", start) if mode == "sync" else asyncio.run(chain.aforecast("GB", start))
    assert sig.source == "uk" and len(sig) == 48
    assert any("electricitymaps" in note for note in sig.notes)


def test_a_chain_needs_real_sources() -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        FallbackChain([])
    with pytest.raises(InvalidInputError, match="'lastgood'"):
        FallbackChain(["lastgood"])
