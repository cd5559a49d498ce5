"""WattTime v3 against a loopback server serving the recorded responses: login, token reuse, MOER units."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.providers.watttime import LBS_PER_MWH_IN_G_PER_KWH, WattTimeProvider
from carbon_sensors.signal import SignalKind

from .live_api_support import ask, options, recorded, url_of

WT = "watttime"
USER, PASSWORD = "freddo", "pw-Secret-9!x"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = recorded(WT, "login")["token"]
NOW = "2022-07-15T00:02Z"


def provider(server: HTTPServer, now: str = NOW) -> WattTimeProvider:
    return WattTimeProvider(username=USER, password=PASSWORD, **options(url_of(server), now))


def serve_login(server: HTTPServer) -> None:
    server.expect_request("/login", headers={"Authorization": BASIC}).respond_with_json(recorded(WT, "login"))


def logins(server: HTTPServer) -> int:
    return sum(1 for request, _ in server.log if request.path == "/login")


def test_latest_logs_in_and_converts_moer_to_g_per_kwh(api: HTTPServer, mode: str) -> None:
    serve_login(api)
    api.expect_request(
        "/v3/forecast",
        query_string={"signal_type": "co2_moer", "region": "CAISO_NORTH", "horizon_hours": "0"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).respond_with_json(recorded(WT, "forecast"))
    reading = ask(mode, provider(api), "latest", "caiso_north")
    assert reading.value == pytest.approx(870 * 0.453592)
    assert reading.kind is SignalKind.MARGINAL
    assert reading.period_start == pd.Timestamp("2022-07-15T00:00Z")
    assert reading.source == "watttime"


def test_token_is_reused_then_refreshed_after_a_401(api: HTTPServer, mode: str) -> None:
    serve_login(api)
    api.expect_request("/v3/historical").respond_with_json(recorded(WT, "historical"))
    wt = provider(api)
    first = ask(
        mode,
        wt,
        "history",
        "CAISO_NORTH",
        pd.Timestamp("2022-07-15T00:00Z"),
        pd.Timestamp("2022-07-15T00:10Z"),
    )
    ask(
        mode,
        wt,
        "history",
        "CAISO_NORTH",
        pd.Timestamp("2022-07-15T00:00Z"),
        pd.Timestamp("2022-07-15T00:05Z"),
    )
    assert logins(api) == 1, "a valid token must be reused"
    assert first.values.tolist() == pytest.approx(
        [870 * LBS_PER_MWH_IN_G_PER_KWH, 860 * LBS_PER_MWH_IN_G_PER_KWH]
    )
    assert first.resolution == pd.Timedelta(minutes=5)
    assert first.kind is SignalKind.MARGINAL

    api.clear()
    serve_login(api)
    api.expect_oneshot_request("/v3/historical").respond_with_json({"error": "token expired"}, status=401)
    api.expect_request("/v3/historical").respond_with_json(recorded(WT, "historical"))
    again = ask(
        mode,
        wt,
        "history",
        "CAISO_NORTH",
        pd.Timestamp("2022-07-15T00:05Z"),
        pd.Timestamp("2022-07-15T00:10Z"),
    )
    assert logins(api) == 1, "a 401 on a data call must log in again, once"
    assert again.values.tolist() == pytest.approx([860 * LBS_PER_MWH_IN_G_PER_KWH])


def test_forecast_is_marginal_with_its_generation_time(api: HTTPServer, mode: str) -> None:
    serve_login(api)
    api.expect_request(
        "/v3/forecast",
        query_string={"signal_type": "co2_moer", "region": "CAISO_NORTH", "horizon_hours": "24"},
    ).respond_with_json(recorded(WT, "forecast"))
    sig = ask(mode, provider(api), "forecast", "CAISO_NORTH", None, timedelta(hours=24))
    assert len(sig) == 288
    assert sig.resolution == pd.Timedelta(minutes=5)
    assert sig.start == pd.Timestamp("2022-07-15T00:00Z")
    assert sig.kind is SignalKind.MARGINAL
    raw = recorded(WT, "forecast")
    assert sig.issued_at == pd.Timestamp(raw["meta"]["generated_at"])
    assert sig.values.iloc[0] == pytest.approx(raw["data"][0]["value"] * LBS_PER_MWH_IN_G_PER_KWH)


def test_signal_index_and_region_from_location(api: HTTPServer) -> None:
    serve_login(api)
    api.expect_request(
        "/v3/signal-index", query_string={"signal_type": "co2_moer", "region": "PSCO"}
    ).respond_with_json(recorded(WT, "signal-index"))
    api.expect_request("/v3/region-from-loc").respond_with_json(recorded(WT, "region-from-loc"))
    wt = provider(api, now="2024-06-18T18:42Z")
    index = wt.signal_index("PSCO")
    assert index.percentile == 96.0
    assert index.period_start == pd.Timestamp("2024-06-18T18:40Z")
    assert wt.region_from_location(42.372, -72.519) == "ISONE_WCMA"
    request = api.log[-1][0]
    assert request.args["latitude"] == "42.372" and request.args["longitude"] == "-72.519"


def test_many_provider_objects_share_one_login(api: HTTPServer) -> None:
    """As Airflow triggers would: 200 provider objects, one account, five regions: one login in all."""
    serve_login(api)
    api.expect_request("/v3/forecast").respond_with_json(recorded(WT, "forecast"))
    base = options(url_of(api), NOW)
    regions = ["CAISO_NORTH", "PSCO", "BPA", "PJM_DC", "ISONE_WCMA"]
    providers = [WattTimeProvider(username=USER, password=PASSWORD, **base) for _ in range(200)]

    async def all_at_once() -> list[float]:
        readings = await asyncio.gather(*(p.alatest(regions[i % 5]) for i, p in enumerate(providers)))
        return [r.value for r in readings]

    values = asyncio.run(all_at_once())
    assert len(values) == 200
    assert logins(api) == 1
    assert sum(1 for request, _ in api.log if request.path == "/v3/forecast") == 5
