"""The shipped real traces: present, matching the recorded originals, with clear unknown-zone errors."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors import embedded
from carbon_sensors.errors import InvalidInputError, UnknownZoneError


def test_catalogue_has_fourteen_measured_zones_and_neso() -> None:
    em = [e.zone for e in embedded.CATALOGUE if e.dataset == embedded.ELECTRICITYMAPS]
    assert len(em) == 14
    assert "IN-WE" not in em and "JP-TK" not in em  # 100% modelled: never shipped as measured data
    assert [e.zone for e in embedded.CATALOGUE if e.dataset == embedded.NESO] == ["GB"]


def test_every_embedded_trace_is_a_full_year(tmp_path: Path) -> None:
    for entry in embedded.CATALOGUE:
        sig = embedded.load(entry.zone, dataset=entry.dataset)
        assert sig.start <= pd.Timestamp("2023-01-01T00:00Z")
        assert sig.end == pd.Timestamp("2024-01-01T00:00Z")


def test_embedded_values_equal_the_recorded_fixture(traces_dir: Path) -> None:
    sig = embedded.load("DE").between(pd.Timestamp("2023-06-01T00:00Z"), pd.Timestamp("2023-06-04T00:00Z"))
    with open(traces_dir / "DE-LU_2023-06_hourly.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sig.values.tolist() == [float(r["Carbon Intensity gCO₂eq/kWh (LCA)"]) for r in rows]


def test_package_data_is_small_and_attributed() -> None:
    data = resources.files("carbon_sensors.data")
    total = sum(p.stat().st_size for p in Path(str(data)).glob("*.csv.gz"))
    assert total < 3 * 1024 * 1024
    attribution = data.joinpath("ATTRIBUTION.md").read_text()
    assert "Electricity Maps" in attribution and "ODbL" in attribution and "CC BY 4.0" in attribution


def test_unknown_zone_lists_near_matches() -> None:
    with pytest.raises(UnknownZoneError, match=r"zone 'de' is not known.*did you mean DE\?"):
        embedded.load("de")
    with pytest.raises(UnknownZoneError, match=r"did you mean .*US-CAL-CISO"):
        embedded.load("US-CAL")
    with pytest.raises(UnknownZoneError, match=r"Known zones: GB$"):
        embedded.load("DE", dataset="neso-2023")


def test_bad_dataset_and_column() -> None:
    with pytest.raises(InvalidInputError, match="dataset 'ember' is not embedded"):
        embedded.load("DE", dataset="ember")
    with pytest.raises(
        InvalidInputError, match=r"column 'forecast' is not in .*choose one of \['lifecycle', 'direct'\]"
    ):
        embedded.load("DE", column="forecast")
