"""`carbon-aware report`: a run's report recomputed from its JSONL timeline equals the report it returned."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors.cli import main
from carbon_sensors.emissions import EmissionsLedger, IntensityLookup
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.units import duration_text, energy_text, mass_text, significant

T0 = pd.Timestamp("2023-06-01T00:00Z")


def _write_timeline(path: Path) -> dict[str, object]:
    lookup = IntensityLookup(TraceProvider(), "DE", refetch_seconds=0)
    ledger = EmissionsLedger(zone="DE", submitted_at=T0, pue=1.2, lookup=lookup, jsonl_path=path)
    for hour in (3, 4):  # 0.5 kWh in each of two hours of real DE data, 3 h after submission
        ledger.add_energy(T0 + pd.Timedelta(hours=hour), T0 + pd.Timedelta(hours=hour + 1),
                          {"cpu": 0.5 * 3.6e6}, {"cpu": "rapl"})  # fmt: skip
    ledger.write_jsonl()
    return ledger.report().to_dict()


def test_report_json_equals_the_runs_own_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timeline = tmp_path / "emissions.jsonl"
    expected = _write_timeline(timeline)
    assert main(["report", str(timeline), "--json"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    assert recomputed == json.loads(json.dumps(expected))
    assert recomputed["energy_kwh"] == pytest.approx(1.0)
    assert recomputed["energy_kwh_with_pue"] == pytest.approx(1.2)


def test_report_table_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timeline = tmp_path / "emissions.jsonl"
    _write_timeline(timeline)
    assert main(["report", str(timeline)]) == 0
    table = capsys.readouterr().out
    assert "electricitymaps-2023:lifecycle" in table
    assert main(["report", str(timeline), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # full precision
    # people read units: 1 kWh as kWh, 1.2 kWh with PUE, grams of CO2eq to 3 significant digits, hours
    rows = dict(re.findall(r"^(\S.*?\S)\s{2,}(\S.*?)\s*$", table, flags=re.MULTILINE))
    assert rows["Energy"] == "1.00 kWh" and rows["Energy with PUE"] == "1.20 kWh"
    assert rows["Energy by device"] == "cpu: 1.00 kWh"
    grams = doc["emissions_g"]
    assert 100 < grams < 1000 and grams != round(grams, 1)
    assert rows["Emissions"] == f"{grams:.0f} gCO2eq"
    assert rows["Average intensity"] == f"{doc['avg_intensity']:.1f} gCO2eq/kWh"
    assert rows["Active time"] == "2.00 h" and rows["Pauses"] == "0" and rows["Paused time"] == "0 s"
    assert rows["Grid zone"] == "DE" and rows["PUE"] == "1.2"
    assert str(doc["emissions_g"]) not in table  # no raw float for people
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read emissions timeline" in capsys.readouterr().err


def test_report_summary_is_one_line_in_readable_units() -> None:
    from carbon_sensors.emissions import report_summary

    line = report_summary(
        {"energy_kwh_with_pue": 0.0123456, "emissions_g": 4.5678, "avoided_g": 1234.5, "pauses": 2,
         "paused_seconds": 7300.0}
    )  # fmt: skip
    assert line == (
        "Energy with PUE: 12.3 Wh; Emissions: 4.57 gCO2eq; Avoided emissions: 1.23 kgCO2eq; Pauses: 2; "
        "Paused time: 2.03 h"
    )


@pytest.mark.parametrize(
    ("show", "value", "expected"),
    [
        (mass_text, 999.6, "1.00 kgCO2eq"),
        (mass_text, 999.4, "999 gCO2eq"),
        (energy_text, 0.99961, "1.00 kWh"),
        (energy_text, 0.0009996, "1.00 Wh"),
        (duration_text, 59.98, "1.00 min"),
        (duration_text, 3599.9, "1.00 h"),
        (significant, 9.996, "10.0"),
        (significant, 0.09996, "0.100"),
    ],
)
def test_units_and_digits_are_picked_after_rounding(
    show: Callable[[float], str], value: float, expected: str
) -> None:
    assert show(value) == expected
