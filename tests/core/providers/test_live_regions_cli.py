"""Cloud region mapping, building sources by name, and the `now` / `forecast` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.cli import main
from carbon_sensors.errors import InvalidInputError, UnknownZoneError
from carbon_sensors.providers import (
    ElectricityMapsProvider,
    TraceProvider,
    UKCarbonIntensityProvider,
    WattTimeProvider,
    make_source,
)
from carbon_sensors.providers.regions import all_regions, lookup, zone_for

from .live_api_support import recorded, url_of


def test_cloud_regions_map_to_zones() -> None:
    assert zone_for("aws", "eu-west-1") == "IE"
    assert zone_for("GCP", "europe-west4") == "NL"
    assert zone_for("azure", "uksouth", "uk") == "GB-13"
    assert zone_for("aws", "us-west-1", "watttime") == "CAISO_NORTH"
    counts = {cloud: sum(1 for r in all_regions() if r.cloud == cloud) for cloud in ("aws", "gcp", "azure")}
    assert min(counts.values()) >= 20
    assert len({(r.cloud, r.region) for r in all_regions()}) == len(all_regions())


def test_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(UnknownZoneError, match="did you mean eu-west-1"):
        lookup("aws", "eu-wset-1")
    with pytest.raises(InvalidInputError, match="'ibm'"):
        lookup("ibm", "x")
    with pytest.raises(UnknownZoneError, match=r"region_from_location\(53.35, -6.26\)"):
        zone_for("aws", "eu-west-1", "watttime")


def test_make_source_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARBON_AWARE_REPLAY_START", raising=False)
    assert isinstance(make_source("electricitymaps", token="abc"), ElectricityMapsProvider)
    assert isinstance(make_source("WattTime", username="u", password="p"), WattTimeProvider)
    uk = make_source("uk", base_url="http://127.0.0.1:8080/")
    assert isinstance(uk, UKCarbonIntensityProvider) and uk.base_url == "http://127.0.0.1:8080"
    assert isinstance(make_source("trace"), TraceProvider)
    with pytest.raises(InvalidInputError, match=r"'nope'.*electricitymaps"):
        make_source("nope")
    with pytest.raises(InvalidInputError, match=r"'uk'.*tokn"):
        make_source("uk", tokn="x")
    with pytest.raises(InvalidInputError, match="not an http"):
        make_source("uk", base_url="ftp://mirror")


def test_cli_now_and_forecast_against_the_recorded_api(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))
    api.expect_request("/intensity/2023-03-14T12:00Z/fw48h").respond_with_json(
        recorded("uk-carbonintensity", "intensity_fw48h")
    )
    monkeypatch.setenv("CARBON_AWARE_UK_URL", url_of(api))
    # the recording is from 2018: accept its age explicitly
    assert main(["now", "--zone", "GB", "--provider", "uk", "--max-age", "4000d", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["value"] == 263.0 and doc["source"] == "uk (actual)" and doc["kind"] == "average"

    assert (
        main(["forecast", "--zone", "GB", "--provider", "uk", "--start", "2023-03-14T12:00Z", "--json"]) == 0
    )
    forecast = json.loads(capsys.readouterr().out)
    assert len(forecast["data"]) == 48 and forecast["data"][0]["value"] == 93.0

    assert main(["forecast", "--zone", "GB", "--provider", "uk", "--start", "2023-03-14T12:00Z"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("# GB average gCO2eq/kWh from uk") and "2023-03-14T12:00:00+00:00" in table

    png = tmp_path / "f.png"
    assert (
        main(
            [
                "forecast",
                "--zone",
                "GB",
                "--provider",
                "uk",
                "--start",
                "2023-03-14T12:00Z",
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_now_reports_stale_data_as_an_error(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))
    monkeypatch.setenv("CARBON_AWARE_UK_URL", url_of(api))
    assert main(["now", "--zone", "GB", "--provider", "uk"]) == 2
    assert "stale data" in capsys.readouterr().err


def test_cli_now_on_the_replayed_trace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARBON_AWARE_REPLAY_START", "2023-06-01T12:00Z")
    assert main(["now", "--zone", "DE", "--provider", "trace"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DE: ") and "replay" in out
