"""The emissions ledger against hand computations with time-varying intensity; JSONL recomputation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors.emissions import (
    FALLBACK_LAST_KNOWN,
    FALLBACK_NO_SOURCE,
    FALLBACK_PARTIAL,
    WORLD_AVERAGE_INTENSITY,
    EmissionsLedger,
    IntensityLookup,
    read_jsonl,
)
from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError, NoDataError
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.signal import IntensitySignal, make_signal

KWH = 3.6e6  # joules
T0 = pd.Timestamp("2023-06-01T00:00Z")


def hourly(values: list[float], zone: str = "XX") -> IntensitySignal:
    index = pd.date_range(T0, periods=len(values), freq="1h")
    return make_signal(pd.Series(values, index=index), zone=zone, source="hand-made")


def at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def ledger_for(signal: IntensitySignal, *, pue: float = 1.0, path: Path | None = None) -> EmissionsLedger:
    lookup = IntensityLookup(TraceProvider(signals={signal.zone: signal}), signal.zone, refetch_seconds=0)
    return EmissionsLedger(zone=signal.zone, submitted_at=at(0.5), pue=pue, lookup=lookup, jsonl_path=path)


def test_time_varying_intensity_matches_a_hand_computation(tmp_path: Path) -> None:
    # 00h 100, 01h 300, 02h 200, 03h 50 g/kWh; submitted 00:30
    path = tmp_path / "emissions.jsonl"
    ledger = ledger_for(hourly([100, 300, 200, 50]), pue=1.5, path=path)
    ledger.write_jsonl()
    first = ledger.add_energy(
        at(0.5), at(1.5), {"cuda:0": 0.75 * KWH, "cpu": 0.25 * KWH}, {"cuda:0": "nvml-energy", "cpu": "rapl"}
    )
    ledger.begin_pause(at(1.5), at(2.5), "grid is dirty")
    ledger.end_pause(at(2.5))
    second = ledger.add_energy(at(2.5), at(3.5), {"cuda:0": 2 * KWH}, {"cuda:0": "nvml-energy"})

    # [00:30, 01:30): half at 100, half at 300 -> 200. [02:30, 03:30): half 200, half 50 -> 125.
    assert [first.intensity, second.intensity] == pytest.approx([200.0, 125.0])
    # The run-now twin of the second interval starts where the first ended had there been no pause: [01:30, 02:30).
    assert (second.run_now_start, second.run_now_end) == (at(1.5), at(2.5))
    assert second.run_now_intensity == pytest.approx(250.0)  # half 300, half 200

    report = ledger.report().to_dict()
    assert report["energy_kwh"] == pytest.approx(3.0)
    assert report["energy_kwh_with_pue"] == pytest.approx(4.5)
    assert report["emissions_g"] == pytest.approx(1.5 * (1 * 200 + 2 * 125))  # 675, not mean x total
    assert report["run_now_emissions_g"] == pytest.approx(1.5 * (1 * 200 + 2 * 250))  # 1050
    assert report["avoided_g"] == pytest.approx(375.0)
    assert report["avg_intensity"] == pytest.approx(150.0)
    assert (report["paused_seconds"], report["pauses"]) == (3600.0, 1)
    assert report["energy_kwh_by_device"] == {"cuda:0": pytest.approx(2.75), "cpu": pytest.approx(0.25)}
    assert report["power_sources"] == ["nvml-energy", "rapl"]
    assert report["intensity_sources"] == ["hand-made"] and report["kind"] == "average"
    assert (report["started_at"], report["finished_at"]) == (at(0.5).isoformat(), at(3.5).isoformat())
    assert report["fallbacks"] == []
    json.dumps(report)

    # the JSONL written as we went recomputes the same report, and so does a record round trip
    assert read_jsonl(path).report().to_dict() == report
    assert EmissionsLedger.from_records(ledger.to_records()).report().to_dict() == report


def test_real_recorded_intensity_hand_computed() -> None:
    """Electricity Maps DE 2023 (embedded real data): three 20-minute intervals straddling an hour."""
    provider = TraceProvider()
    de = provider.signal("DE")
    lookup = IntensityLookup(provider, "DE", refetch_seconds=0)
    ledger = EmissionsLedger(zone="DE", submitted_at=at(0), lookup=lookup)
    for k in range(3):  # 00:40-01:00, 01:00-01:20, 01:20-01:40, each 0.1 kWh
        ledger.add_energy(at(2 / 3 + k / 3), at(1 + k / 3), {"cpu": 0.1 * KWH}, {"cpu": "rapl"})
    v0, v1 = de.value_at(at(0)), de.value_at(at(1))
    report = ledger.report()
    assert report.emissions_g == pytest.approx(0.1 * v0 + 0.1 * v1 + 0.1 * v1)
    assert report.run_now_emissions_g == pytest.approx(0.3 * v0)  # all three twins lie in 00:00-01:00
    assert report.avoided_g == pytest.approx(report.run_now_emissions_g - report.emissions_g)
    assert report.intensity_sources == [de.source]


def test_the_last_known_value_is_the_newest_not_the_run_now_twins() -> None:
    """Reproduced: past the data's end an interval took the run-now twin's intensity (500, at submission)
    as its 'last known' value instead of the newest actual (100), overstating emissions, understating avoided."""
    signal = hourly([500.0] * 5 + [100.0] * 5)  # dirty at submission, clean from 05:00; data ends at 10:00
    lookup = IntensityLookup(TraceProvider(signals={signal.zone: signal}), signal.zone, refetch_seconds=0)
    ledger = EmissionsLedger(zone=signal.zone, submitted_at=at(0), lookup=lookup)
    for k in range(4):  # 09:00-11:00 in half hours, 1 kWh each; the last two have no data
        ledger.add_energy(at(9 + k / 2), at(9.5 + k / 2), {"cpu": KWH}, {"cpu": "rapl"})
    assert [i.intensity for i in ledger.intervals] == [100.0] * 4
    report = ledger.report()
    assert report.emissions_g == pytest.approx(400.0) and report.avoided_g == pytest.approx(1600.0)


def test_missing_data_falls_back_visibly(tmp_path: Path) -> None:
    ledger = ledger_for(hourly([100, 300]))  # data ends at 02:00
    ledger.add_energy(at(0.5), at(1.5), {"cpu": KWH}, {"cpu": "rapl"})
    late = ledger.add_energy(at(2.5), at(3.5), {"cpu": KWH}, {"cpu": "rapl"})
    assert late.intensity == pytest.approx(200.0)  # the last known value (the previous interval's)
    assert late.run_now_intensity == pytest.approx(300.0)  # [01:30, 02:30): only 01:30-02:00 covered
    fallbacks = ledger.report().fallbacks
    assert any(f.startswith(FALLBACK_LAST_KNOWN) for f in fallbacks)
    assert any(f.startswith(FALLBACK_PARTIAL) for f in fallbacks)


class BrokenSource(TraceProvider):
    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        raise NoDataError(f"{zone}: the provider is down")


def test_no_source_and_broken_source_use_the_stated_static_average() -> None:
    none = EmissionsLedger(zone=None, submitted_at=at(0))
    none.add_energy(at(0), at(1), {"cpu": KWH}, {"cpu": "estimate"})
    report = none.report()
    assert report.emissions_g == pytest.approx(WORLD_AVERAGE_INTENSITY)
    assert report.fallbacks == [f"{FALLBACK_NO_SOURCE} (1x)"]  # one interval (with its run-now twin)

    broken = EmissionsLedger(
        zone="DE", submitted_at=at(0), lookup=IntensityLookup(BrokenSource(), "DE", refetch_seconds=0)
    )
    broken.add_energy(at(0), at(1), {"cpu": KWH}, {"cpu": "estimate"})
    assert broken.report().emissions_g == pytest.approx(WORLD_AVERAGE_INTENSITY)
    assert "no intensity data was available" in broken.report().fallbacks[0]


def test_refetch_is_rate_limited_except_when_a_new_period_begins() -> None:
    calls: list[tuple[datetime, datetime]] = []
    signal = hourly([100, 300, 200])

    class Counting(TraceProvider):
        def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
            calls.append((start, end))
            return super().history(zone, start, end)

    wall = [0.0]
    lookup = IntensityLookup(
        Counting(signals={"XX": signal}), "XX", refetch_seconds=60, monotonic=lambda: wall[0]
    )
    for minute in range(0, 120, 10):  # twelve 10-minute intervals over two hourly periods
        lookup.between(at(minute / 60), at((minute + 10) / 60))
    assert len(calls) == 2  # once per period, not once per interval
    late = lookup.between(at(5), at(6))  # a period never asked for: asked (and found missing)
    assert len(calls) == 3 and late.fallback == FALLBACK_LAST_KNOWN
    lookup.between(at(5), at(6))  # asked already, within the rate limit: no call
    assert len(calls) == 3
    wall[0] = 61.0
    lookup.between(at(5), at(6))
    assert len(calls) == 4


def test_bad_input_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"pue=0\.5"):
        EmissionsLedger(zone=None, submitted_at=at(0), pue=0.5)
    with pytest.raises(NaiveDatetimeError):
        EmissionsLedger(zone=None, submitted_at=datetime(2023, 6, 1))  # noqa: DTZ001
    ledger = EmissionsLedger(zone=None, submitted_at=at(0))
    with pytest.raises(InvalidInputError, match="before start"):
        ledger.add_energy(at(1), at(0), {}, {})


def test_a_torn_last_line_is_ignored_but_a_torn_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    ledger = ledger_for(hourly([100, 300]), path=path)
    ledger.write_jsonl()
    ledger.add_energy(at(0.5), at(1), {"cpu": KWH}, {"cpu": "rapl"})
    with path.open("a") as fh:
        fh.write('{"type": "interval", "sta')  # killed mid-append
    assert read_jsonl(path).report().emissions_g == pytest.approx(100.0)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    with pytest.raises(Exception, match="line 2"):
        read_jsonl(path)


def test_zero_length_interval_takes_the_value_at_its_start() -> None:
    ledger = ledger_for(hourly([100, 300]))
    interval = ledger.add_energy(at(1.25), at(1.25), {"cpu": 0.0}, {"cpu": "rapl"})
    assert interval.intensity == pytest.approx(300.0)
    assert interval.end - interval.start == timedelta(0)


def test_twin_before_anything_fetched_is_looked_up_not_guessed() -> None:
    """A resumed run's first intervals lie hours after submission: the run-now twin must use real data.

    Regression: the refetch rate limit suppressed the twin's fetch, so the twin took the last known value
    (the actual's own intensity) and avoided emissions came out near zero or negative.
    """
    provider = TraceProvider()
    de = provider.signal("DE")
    wall = [0.0]
    lookup = IntensityLookup(provider, "DE", refetch_seconds=60, monotonic=lambda: wall[0])
    ledger = EmissionsLedger(zone="DE", submitted_at=at(0), lookup=lookup)
    ledger.add_energy(at(10), at(10.5), {"cpu": 0.1 * KWH}, {"cpu": "rapl"})  # resumed 10 h after submission
    (interval,) = ledger.intervals
    assert interval.fallbacks == ()
    assert interval.intensity == de.value_at(at(10))
    assert interval.run_now_intensity == de.value_at(at(0))


def test_a_range_before_the_data_is_asked_for_once_per_rate_limit() -> None:
    calls: list[datetime] = []
    signal = make_signal(
        pd.Series([100.0, 200.0], index=pd.date_range(at(5), periods=2, freq="1h")), zone="XX", source="late"
    )

    class Counting(TraceProvider):
        def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
            calls.append(start)
            return super().history(zone, start, end)

    lookup = IntensityLookup(
        Counting(signals={"XX": signal}), "XX", refetch_seconds=60, monotonic=lambda: 0.0
    )
    assert lookup.between(at(5), at(5.5)).fallback is None
    for _ in range(3):  # the data starts at 05:00: asking for 01:00 again must not call the source again
        assert lookup.between(at(1), at(1.5)).fallback == FALLBACK_LAST_KNOWN
    assert len(calls) == 2
