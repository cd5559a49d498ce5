"""Reading real trace files in every supported format, and every kind of bad input with its message."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import logging
import lzma
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors.errors import TraceError, TraceQualityError
from carbon_sensors.signal import SignalKind
from carbon_sensors.traces import read_trace


def _source_rows(path: Path, column: str) -> dict[str, float]:
    with open(path, encoding="utf-8", newline="") as f:
        return {row["Datetime (UTC)"]: float(row[column]) for row in csv.DictReader(f)}


def test_electricitymaps_portal_csv_matches_source(traces_dir: Path) -> None:
    path = traces_dir / "DE-LU_2023-06_hourly.csv"
    signal = read_trace(path)
    expected = _source_rows(path, "Carbon Intensity gCO₂eq/kWh (LCA)")
    assert signal.zone == "DE"
    assert signal.kind is SignalKind.AVERAGE
    assert signal.resolution == pd.Timedelta(hours=1)
    assert len(signal) == len(expected) == 72
    for ts, value in signal.values.items():
        assert expected[pd.Timestamp(str(ts)).strftime("%Y-%m-%d %H:%M:%S")] == value


def test_electricitymaps_direct_column(traces_dir: Path) -> None:
    path = traces_dir / "DE-LU_2023-06_hourly.csv"
    direct = read_trace(path, column="direct")
    expected = _source_rows(path, "Carbon Intensity gCO₂eq/kWh (direct)")
    assert direct.values.iloc[0] == expected["2023-06-01 00:00:00"]


def test_neso_csv_reports_the_real_gap(traces_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        signal = read_trace(traces_dir / "neso_2023-10-20_gap.csv", zone="GB")
    assert signal.source == "neso"
    assert signal.resolution == pd.Timedelta(minutes=30)
    gaps = signal.gaps()
    # 91 half hours are missing: the slots 2023-10-20 22:00 .. 2023-10-22 19:00, so the gap ends at 19:30.
    assert gaps == [(pd.Timestamp("2023-10-20T22:00Z"), pd.Timestamp("2023-10-22T19:30Z"))]
    assert "91 missing period(s) of 30min" in caplog.text
    assert [n[:5] for n in signal.notes] == ["gaps:"]


def test_neso_gap_as_error_and_interpolated(traces_dir: Path) -> None:
    path = traces_dir / "neso_2023-10-20_gap.csv"
    with pytest.raises(TraceQualityError, match=r"91 missing period\(s\).*2023-10-20T22:00:00\+00:00"):
        read_trace(path, zone="GB", gaps="error")
    filled = read_trace(path, zone="GB", gaps="interpolate")
    assert filled.gaps() == []
    assert len(filled) == len(read_trace(path, zone="GB")) + 91
    assert any(n.startswith("interpolated:") for n in filled.notes)


def test_neso_forecast_column(traces_dir: Path) -> None:
    forecast = read_trace(traces_dir / "neso_2023-10-20_gap.csv", zone="GB", column="forecast")
    with open(traces_dir / "neso_2023-10-20_gap.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert forecast.values.iloc[0] == float(first["forecast"])
    assert forecast.start == pd.Timestamp(first["from"])


def test_naive_timestamps_rejected_unless_assumed_utc(traces_dir: Path) -> None:
    path = traces_dir / "lwa_ger_2020-03-28_naive.csv"
    with pytest.raises(
        TraceError, match=r"line 2: timestamp '2020-03-28 00:00:00' has no time zone.*assume_utc"
    ):
        read_trace(path, zone="DE")
    signal = read_trace(path, zone="DE", assume_utc=True)
    assert signal.resolution == pd.Timedelta(minutes=15)
    assert signal.start == pd.Timestamp("2020-03-28T00:00Z")
    assert len(signal) == 192


def test_marginal_kind_is_kept(traces_dir: Path) -> None:
    signal = read_trace(
        traces_dir / "watttime_caiso-north_2023-06-08_actual.csv",
        zone="CAISO_NORTH",
        kind="marginal",
        column="Caiso_North",
        assume_utc=True,
    )
    assert signal.kind is SignalKind.MARGINAL
    assert signal.resolution == pd.Timedelta(minutes=5)
    assert signal.to_hourly().resolution == pd.Timedelta(hours=1)
    assert len(signal.to_hourly()) == 24


def test_plain_csv_json_and_parquet_round_trip(tmp_path: Path, traces_dir: Path) -> None:
    original = read_trace(traces_dir / "DE-LU_2023-06_hourly.csv")
    plain = tmp_path / "plain.csv"
    plain.write_text(
        "timestamp,value\n" + "".join(f"{r['timestamp']},{r['value']}\n" for r in original.to_records())
    )
    as_json = tmp_path / "signal.json"
    as_json.write_text(json.dumps(original.to_dict()))
    as_parquet = tmp_path / "signal.parquet"
    pd.DataFrame({"timestamp": original.values.index, "value": original.values.to_numpy()}).to_parquet(
        as_parquet
    )
    for path in (plain, as_json, as_parquet):
        back = read_trace(path, zone="DE")
        pd.testing.assert_series_equal(back.values, original.values, check_freq=False)
    assert read_trace(as_json).zone == "DE"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "timestamp,value\n2023-06-01T00:00Z,100\n2023-06-01T01:00Z,abc\n",
            r"line 3: bad value 'abc'; expected a number",
        ),
        ("timestamp,value\n2023-06-01T00:00Z,100\nnot-a-date,120\n", r"line 3: bad timestamp 'not-a-date'"),
        ("timestamp,value\n2023-06-01T00:00Z,-5\n", r"line 2: bad value '-5'; expected a number >= 0"),
        (
            "when,how_much\n2023-06-01T00:00Z,100\n",
            r"cannot find a time and a value column in \['when', 'how_much'\]",
        ),
        (
            "timestamp,value\n2023-06-01T00:00Z,100\n2023-06-01T01:00Z,110\n2023-06-01T01:00Z,111\n",
            r"duplicate timestamps, first 2023-06-01T01:00:00\+00:00 \(lines \[3, 4\]\)",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=message) as info:
        read_trace(path, zone="DE")
    assert str(path) in str(info.value)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(TraceError, match="cannot read trace file"):
        read_trace(binary)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TraceError, match="cannot read trace file"):
        read_trace(broken)
    with pytest.raises(TraceError, match="gaps='sometimes' is not valid"):
        read_trace(tmp_path / "nope.csv", gaps="sometimes")  # type: ignore[arg-type]


def test_portal_export_without_its_time_column_names_it(tmp_path: Path) -> None:
    """An Electricity Maps export (recognised by its LCA column) without 'Datetime (UTC)' raised KeyError."""
    path = tmp_path / "portal.csv"
    path.write_text("Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)\nDE,300\n", encoding="utf-8")
    with pytest.raises(TraceError, match=r"no column 'Datetime \(UTC\)', which an Electricity Maps portal"):
        read_trace(path)


PLAIN = b"timestamp,value\n" + b"".join(b"2023-06-01T%02d:00Z,%d\n" % (h, 100 + h) for h in range(24))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("cut.csv.gz", gzip.compress(PLAIN)[:-12]),
        ("cut.csv.bz2", bz2.compress(PLAIN)[:-12]),
        ("cut.csv.xz", lzma.compress(PLAIN)[:-12]),
        ("corrupt.csv.xz", b"not xz at all" * 8),
        ("corrupt.csv.zip", b"not a zip" * 8),
        ("corrupt.csv.tar.gz", gzip.compress(b"not a tar" * 100)),
    ],
)
def test_truncated_or_corrupt_compressed_traces(tmp_path: Path, name: str, content: bytes) -> None:
    """A cut-off download raised EOFError, LZMAError, BadZipFile or ReadError instead of a TraceError."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TraceError, match="compressed data is truncated or corrupt") as info:
        read_trace(path, zone="DE")
    assert str(path) in str(info.value)


def test_local_offsets_across_a_dst_switch_are_read_as_utc(tmp_path: Path, traces_dir: Path) -> None:
    """B7: real German 15-minute data written in Berlin local time (+01:00, then +02:00 from 2020-03-29
    01:00 UTC) raised pandas' raw "Mixed timezones" error."""
    real = read_trace(traces_dir / "lwa_ger_2020-03-28_naive.csv", assume_utc=True)
    local = pd.DatetimeIndex(real.values.index).tz_convert("Europe/Berlin")
    assert {str(t.utcoffset()) for t in local} == {"1:00:00", "2:00:00"}
    path = tmp_path / "de_local.csv"
    rows = [f"{t.isoformat()},{v}" for t, v in zip(local, real.values, strict=True)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    back = read_trace(path, zone="DE")
    assert back.values.index.equals(real.values.index)
    assert back.values.tolist() == real.values.tolist()
    assert back.resolution == pd.Timedelta(minutes=15) and not back.gaps()


def test_offsets_and_naive_rows_mixed_name_the_naive_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("timestamp,value\n2023-03-26T01:00+01:00,100\n2023-03-26T03:00,90\n")
    with pytest.raises(TraceError, match=r"line 3: timestamp '2023-03-26T03:00' has no time zone"):
        read_trace(path)
    assert read_trace(path, assume_utc=True).values.index[-1] == pd.Timestamp("2023-03-26T03:00Z")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("header.csv", "timestamp,value\n", r"no data rows, only a header"),
        ("empty.csv", "", r"cannot read trace file"),
        ("blank.csv", "timestamp,value\n2023-06-01T00:00Z,\n2023-06-01T01:00Z,\n", r"all 2 values are empty"),
        ("nan.csv", "timestamp,value\n2023-06-01T00:00Z,nan\n", r"all 1 values are empty"),
        ("empty.json", "[]", r"no data rows"),
        ("nulls.json", '{"data": [{"timestamp": "2023-06-01T00:00Z", "value": null}]}', r"values are empty"),
        (
            "inf.csv",
            "timestamp,value\n2023-06-01T00:00Z,inf\n",
            r"line 2: bad value 'inf'; expected a finite",
        ),
        (
            "huge.csv",
            "timestamp,value\n2023-06-01T00:00Z,1e400\n",
            r"line 2: bad value '1e400'; expected a finite",
        ),
        ("far.csv", "timestamp,value\n2999-06-01T00:00Z,5\n", r"line 2: bad timestamp '2999-06-01T00:00Z'"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, r"cannot read trace file"),
        (
            "sparse.csv",
            "timestamp,value\n2020-01-01T00:00Z,1\n2020-01-01T00:00:01Z,1\n2020-01-01T00:00:02Z,1\n2190-01-01T00:00Z,1\n",
            r"make \d+ periods \(at most 10000000\)",
        ),
    ],
)
def test_empty_and_unusable_traces_are_typed_errors(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    """B8: a header-only CSV or an all-empty trace raised IndexError; inf and far-off times slipped in."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TraceError, match=message) as info:
        read_trace(path, zone="DE")
    assert str(path) in str(info.value)
