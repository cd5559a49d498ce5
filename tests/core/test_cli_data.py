"""`carbon-aware zones` and `carbon-aware history`, run as a user would."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_sensors.cli import main


def test_console_script_lists_at_least_15_zones() -> None:
    exe = shutil.which("carbon-aware", path=str(Path(sys.executable).parent))
    assert exe is not None, "the carbon-aware console script is not installed in this environment"
    out = subprocess.run([exe, "zones", "--json"], capture_output=True, text=True, check=True).stdout
    zones = json.loads(out)
    assert len(zones) >= 15
    assert {"DE", "GB", "US-CAL-CISO"} <= {z["zone"] for z in zones}
    assert {z["source"] for z in zones} == {"electricitymaps-2023", "neso-2023"}


def test_history_json_matches_the_source_csv(traces_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["history", "--zone", "DE", "--start", "2023-06-01T00:00Z", "--end", "2023-06-02T00:00Z", "--json"]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    with open(traces_dir / "DE-LU_2023-06_hourly.csv", encoding="utf-8", newline="") as f:
        source = [r for r in csv.DictReader(f) if r["Datetime (UTC)"].startswith("2023-06-01")]
    assert len(doc["data"]) == 24
    assert [d["value"] for d in doc["data"]] == [
        float(r["Carbon Intensity gCO₂eq/kWh (LCA)"]) for r in source
    ]
    assert doc["zone"] == "DE" and doc["kind"] == "average" and doc["unit"] == "gCO2eq/kWh"


def test_history_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "history",
        "--zone",
        "GB",
        "--dataset",
        "neso-2023",
        "--start",
        "2023-01-01T00:00Z",
        "--end",
        "2023-01-01T02:00Z",
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "GB average gCO2eq/kWh from neso-2023:actual" in table
    assert table.count("2023-01-01T0") == 4
    png = tmp_path / "gb.png"
    assert main([*args, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_from_a_trace_file(traces_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = traces_dir / "lwa_ger_2020-03-28_naive.csv"
    args = [
        "history",
        "--zone",
        "DE",
        "--trace",
        str(trace),
        "--start",
        "2020-03-28T00:00Z",
        "--end",
        "2020-03-28T01:00Z",
        "--json",
    ]
    assert main(args) == 2  # naive timestamps: refused without --assume-utc
    assert "has no time zone" in capsys.readouterr().err
    assert main([*args, "--assume-utc"]) == 0
    assert len(json.loads(capsys.readouterr().out)["data"]) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "Germany"], "zone 'Germany' is not known"),
        (["--zone", "DE", "--start", "2023-06-01T00:00"], "--start=2023-06-01 00:00:00 has no time zone"),
        (["--zone", "DE", "--start", "yesterday"], "--start='yesterday' is not an ISO 8601 datetime"),
        (["--zone", "DE", "--start", "2025-01-01T00:00Z", "--end", "2025-01-02T00:00Z"], "no data between"),
    ],
)
def test_history_bad_input_exits_2_with_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full = {"--start": "2023-06-01T00:00Z", "--end": "2023-06-02T00:00Z"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        full[flag] = value
    argv = ["history", *[x for pair in full.items() for x in pair]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
