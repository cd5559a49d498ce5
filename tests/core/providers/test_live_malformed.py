"""Malformed payloads from a real loopback server: a typed error naming provider, field and value, so the
strategies' fail-open path runs instead of an OverflowError, RecursionError, TypeError or KeyError escaping.

The bodies are the recorded responses with one part broken, as a faulty or hostile upstream would send them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.decision import Action
from carbon_sensors.errors import CarbonAwareError, MalformedResponseError
from carbon_sensors.planner import plan_window
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.live import LiveProvider
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.providers.watttime import WattTimeProvider
from carbon_sensors.signal import make_signal
from carbon_sensors.strategies import ThresholdStrategy

from .live_api_support import options, recorded, url_of

WT_NOW = "2022-07-15T00:12Z"
EM_NOW = "2021-08-19T12:30Z"
UK_NOW = "2018-01-20T12:10Z"


def watttime(url: str) -> WattTimeProvider:
    return WattTimeProvider(username="freddo", password="pw", **options(url, WT_NOW))


def electricitymaps(url: str) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(token="tok", **options(url, EM_NOW))


def uk(url: str) -> UKCarbonIntensityProvider:
    return UKCarbonIntensityProvider(**options(url, UK_NOW))


def broken_watttime(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(recorded("watttime", "historical"))
    change(body)
    return dict(body)


def em_history_with(value: str) -> bytes:
    """The recorded Electricity Maps history with its 12:00 value written as `value` (JSON text)."""
    text = json.dumps(recorded("electricitymaps", "carbon-intensity_history"))
    return text.replace('"carbonIntensity": 338', f'"carbonIntensity": {value}').encode()


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# (case, provider factory, path the strategy's history() asks, response body bytes, words the error must say)
CASES: list[tuple[str, Callable[[str], LiveProvider], str, bytes, tuple[str, ...]]] = [
    (
        "watttime-value-10**400",
        watttime,
        "/v3/historical",
        json.dumps(
            broken_watttime(lambda b: b["data"][1].__setitem__("value", 10**400)), allow_nan=True
        ).encode(),
        ("watttime", "value", "1000000"),
    ),
    (
        "watttime-units-list",
        watttime,
        "/v3/historical",
        json.dumps(broken_watttime(lambda b: b["meta"].__setitem__("units", ["lbs_co2_per_mwh"]))).encode(),
        ("watttime", "units", "['lbs_co2_per_mwh']"),
    ),
    (
        "watttime-no-data",
        watttime,
        "/v3/historical",
        json.dumps(broken_watttime(lambda b: b.pop("data"))).encode(),
        ("watttime", "'data'"),
    ),
    (
        "watttime-huge-period",
        watttime,
        "/v3/historical",
        json.dumps(
            broken_watttime(lambda b: b["meta"].__setitem__("data_point_period_seconds", 10**20))
        ).encode(),
        ("watttime", "data_point_period_seconds", "100000000000000000000"),
    ),
    ("watttime-deep-nesting", watttime, "/v3/historical", deep(100_000), ("watttime", "nested")),
    (
        "electricitymaps-value-1e400",
        electricitymaps,
        "/v3/carbon-intensity/history",
        em_history_with("1e400"),
        ("electricitymaps", "carbonIntensity", "inf"),
    ),
    (
        "electricitymaps-negative",
        electricitymaps,
        "/v3/carbon-intensity/history",
        em_history_with("-5"),
        ("electricitymaps", "carbonIntensity", "-5"),
    ),
    (
        "electricitymaps-NaN",
        electricitymaps,
        "/v3/carbon-intensity/history",
        em_history_with("NaN"),
        ("electricitymaps", "carbonIntensity", "nan"),
    ),
    (
        "uk-Infinity",
        uk,
        "/intensity/2018-01-20T12:10Z/pt24h",
        b'{"data": [{"from": "2018-01-20T11:30Z", "to": "2018-01-20T12:00Z",'
        b' "intensity": {"forecast": 266, "actual": Infinity}}]}',
        ("uk", "actual", "inf"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_payload_is_a_typed_error_naming_the_field(
    api: HTTPServer, case: tuple[str, Callable[[str], LiveProvider], str, bytes, tuple[str, ...]]
) -> None:
    _, make, path, body, words = case
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_request(path).respond_with_data(body, content_type="application/json")
    provider = make(url_of(api))
    now = provider.clock()
    with pytest.raises(MalformedResponseError) as info:
        provider.history(provider.normalise_zone(zone_of(provider)), now - timedelta(hours=1), now)
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_threshold_strategy_fails_open_on_a_malformed_payload(
    api: HTTPServer, case: tuple[str, Callable[[str], LiveProvider], str, bytes, tuple[str, ...]]
) -> None:
    _, make, path, body, _ = case
    api.expect_request("/login").respond_with_json(recorded("watttime", "login"))
    api.expect_request(path).respond_with_data(body, content_type="application/json")
    provider = make(url_of(api))
    strategy = ThresholdStrategy(
        provider,
        zone_of(provider),
        pause_above=1.0,
        resume_below=0.5,
        max_pause=timedelta(hours=1),
        max_age=timedelta(hours=1),
        on_error="run",
    )
    decision = strategy.decide(provider.clock(), remaining_work=timedelta(hours=1), deadline=None)
    assert decision.action is Action.RUN and decision.fallback, decision
    assert "fail open" in decision.reason


def test_a_malformed_login_names_the_field_and_keeps_the_cause_readable(api: HTTPServer) -> None:
    """Redaction masks the word after "token: ", so a cause written there lost its exception name."""
    api.expect_request("/login").respond_with_json([{"token": "not here"}])
    with pytest.raises(MalformedResponseError) as info:
        watttime(url_of(api)).latest("CAISO_NORTH")
    assert "reading token (TypeError: list indices must be integers" in str(info.value), str(info.value)


def zone_of(provider: LiveProvider) -> str:
    return {"watttime": "CAISO_NORTH", "electricitymaps": "DE", "uk": "GB"}[provider.name]


def test_an_infinite_hour_never_reaches_the_planner() -> None:
    """B12: one inf hour made every later window unknown, and the planner chose 100 g at 00:00 over 50 g
    after 13:00. A signal refuses inf; the hour the upstream could not give is a gap, and the gap spoils
    only the windows that touch it."""
    index = pd.date_range("2023-06-01T00:00Z", periods=24, freq="1h")
    values = pd.Series([100.0] * 13 + [50.0] * 11, index=index)
    values.iloc[5] = float("inf")
    with pytest.raises(CarbonAwareError, match="inf"):
        make_signal(values, zone="DE", source="test")
    values.iloc[5] = float("nan")  # what a missing hour is
    plan = plan_window(
        make_signal(values, zone="DE", source="test"),
        duration=timedelta(hours=2),
        deadline=index[-1] + pd.Timedelta(hours=1),
        earliest_start=index[0],
    )
    assert plan.start >= pd.Timestamp("2023-06-01T13:00Z") and plan.expected_intensity == 50.0
