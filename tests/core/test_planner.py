"""Planner on real recorded data and random forecasts: best windows, slots, zones, fallbacks, deadlines."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbon_sensors import embedded
from carbon_sensors.errors import (
    IncompatibleSignalsError,
    InvalidInputError,
    NaiveDatetimeError,
    UnknownZoneError,
)
from carbon_sensors.planner import plan_slots, plan_window, plan_zones
from carbon_sensors.signal import IntensitySignal, SignalKind, make_signal

T = pd.Timestamp
DAY = T("2023-06-01T00:00Z")
DEADLINE = T("2023-06-02T06:00Z")


def day(zone: str = "DE", kind: SignalKind = SignalKind.AVERAGE) -> IntensitySignal:
    sig = embedded.load(zone).between(DAY, DAY + pd.Timedelta(hours=48))
    return make_signal(sig.values, zone=zone, kind=kind, source="em")


def brute_force_best(values: pd.Series, hours: int, last_start: int) -> float:
    return min(values.iloc[i : i + hours].mean() for i in range(last_start + 1))


def test_window_is_the_best_aligned_window_on_real_data() -> None:
    forecast = day()
    plan = plan_window(forecast, duration=timedelta(hours=3), deadline=DEADLINE)
    assert plan.expected_intensity == pytest.approx(brute_force_best(forecast.values, 3, 27))
    assert plan.end <= DEADLINE and plan.start >= DAY and plan.end - plan.start == pd.Timedelta(hours=3)
    assert plan.run_now_intensity == pytest.approx(forecast.values.iloc[:3].mean())
    assert plan.expected_intensity is not None and plan.run_now_intensity is not None
    assert plan.savings_pct == pytest.approx(100 * (1 - plan.expected_intensity / plan.run_now_intensity))
    assert not plan.fallback and plan.to_dict()["slots"] == [[plan.start.isoformat(), plan.end.isoformat()]]


def test_window_weights_partial_periods_by_overlap() -> None:
    idx = pd.date_range(DAY, periods=4, freq="h", tz="UTC")
    forecast = make_signal(pd.Series([100.0, 10.0, 100.0, 100.0], index=idx), zone="X", source="t")
    plan = plan_window(
        forecast,
        duration=timedelta(minutes=90),
        deadline=DAY + pd.Timedelta(hours=4),
        earliest_start=DAY + pd.Timedelta(minutes=20),
    )
    # best 90 min: covers the cheap hour fully plus 30 min of a dear one
    assert plan.expected_intensity == pytest.approx((60 * 10 + 30 * 100) / 90)
    assert plan.run_now_intensity == pytest.approx((40 * 100 + 50 * 10) / 90)


def test_slots_pick_cheapest_hours_and_respect_min_chunk() -> None:
    idx = pd.date_range(DAY, periods=8, freq="h", tz="UTC")
    values = pd.Series([50.0, 1.0, 50.0, 2.0, 50.0, 50.0, 3.0, 50.0], index=idx)
    forecast = make_signal(values, zone="X", source="t")
    end = DAY + pd.Timedelta(hours=8)
    free = plan_slots(forecast, duration=timedelta(hours=3), deadline=end, min_chunk=timedelta(hours=1))
    assert [s[0].hour for s in free.slots] == [1, 3, 6] and free.expected_intensity == pytest.approx(2.0)
    chunky = plan_slots(forecast, duration=timedelta(hours=4), deadline=end, min_chunk=timedelta(hours=2))
    assert all(b - a >= pd.Timedelta(hours=2) for a, b in chunky.slots)
    assert sum((b - a for a, b in chunky.slots), pd.Timedelta(0)) == pd.Timedelta(hours=4)
    assert chunky.expected_intensity == pytest.approx((1 + 50 + 2 + 50) / 4)


def test_zones_pick_the_cleanest_and_refuse_bad_zone_lists() -> None:
    forecasts = {"DE": day("DE"), "GB": day("GB"), "CA-ON": day("CA-ON")}
    plan = plan_zones(forecasts, duration=timedelta(hours=3), deadline=DEADLINE)
    assert plan.zone == "CA-ON" and set(plan.alternatives) == {"DE", "GB", "CA-ON"}
    assert plan.expected_intensity == min(v for v in plan.alternatives.values() if v is not None)
    with pytest.raises(UnknownZoneError, match="XX"):
        plan_zones(forecasts, duration=timedelta(hours=3), deadline=DEADLINE, zones=["DE", "XX"])
    with pytest.raises(IncompatibleSignalsError, match="mix signal kinds"):
        plan_zones(
            {"DE": day("DE"), "GB": day("GB", SignalKind.MARGINAL)},
            duration=timedelta(hours=3),
            deadline=DEADLINE,
        )
    with pytest.raises(InvalidInputError):
        plan_zones({}, duration=timedelta(hours=3), deadline=DEADLINE)


def test_bad_input_names_the_values() -> None:
    forecast = day()
    with pytest.raises(InvalidInputError, match="deadline=2023-05-31"):
        plan_window(forecast, duration=timedelta(hours=3), deadline=T("2023-05-31T00:00Z"))
    with pytest.raises(InvalidInputError, match="does not fit"):
        plan_window(forecast, duration=timedelta(hours=7), deadline=DAY + pd.Timedelta(hours=6))
    with pytest.raises(NaiveDatetimeError):
        plan_window(forecast, duration=timedelta(hours=3), deadline=T("2023-06-02T06:00"))
    with pytest.raises(NaiveDatetimeError):
        plan_slots(
            forecast,
            duration=timedelta(hours=3),
            deadline=DEADLINE,
            earliest_start=T("2023-06-01"),
            min_chunk=timedelta(hours=1),
        )


@pytest.mark.parametrize("values", [[], [np.nan] * 24])
def test_empty_or_all_nan_forecast_falls_back_explicitly(values: list[float]) -> None:
    idx = pd.date_range(DAY, periods=len(values), freq="h", tz="UTC")
    forecast = make_signal(pd.Series(values, index=idx, dtype="float64"), zone="X", source="t")
    for plan in (
        plan_window(forecast, duration=timedelta(hours=2), deadline=DEADLINE, earliest_start=DAY),
        plan_slots(
            forecast,
            duration=timedelta(hours=2),
            deadline=DEADLINE,
            earliest_start=DAY,
            min_chunk=timedelta(hours=1),
        ),
    ):
        assert plan.fallback and "fallback" in plan.reason and plan.start == DAY
        assert plan.end == DAY + pd.Timedelta(hours=2) and plan.expected_intensity is None


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0, 1000), min_size=1, max_size=60),
    offset_min=st.integers(0, 600),
    duration_min=st.integers(1, 600),
    slack_min=st.integers(0, 3000),
    chunk_min=st.integers(1, 240),
    nan_at=st.lists(st.integers(0, 59), max_size=5),
    jitter_ns=st.integers(0, 59_999_999_999),  # sub-minute times, as a live clock gives them
)
def test_plans_never_end_after_the_deadline(
    values: list[float],
    offset_min: int,
    duration_min: int,
    slack_min: int,
    chunk_min: int,
    nan_at: list[int],
    jitter_ns: int,
) -> None:
    series = pd.Series(values, index=pd.date_range(DAY, periods=len(values), freq="h", tz="UTC"))
    series.iloc[[i for i in nan_at if i < len(values)]] = np.nan
    forecast = make_signal(series, zone="X", source="random")
    earliest = DAY + pd.Timedelta(minutes=offset_min) + pd.Timedelta(jitter_ns, unit="ns")
    duration = pd.Timedelta(minutes=duration_min)
    deadline = earliest + duration + pd.Timedelta(minutes=slack_min)
    for plan in (
        plan_window(forecast, duration=duration, deadline=deadline, earliest_start=earliest),
        plan_slots(
            forecast,
            duration=duration,
            deadline=deadline,
            earliest_start=earliest,
            min_chunk=pd.Timedelta(minutes=chunk_min),
        ),
    ):
        assert plan.end <= deadline and plan.start >= earliest
        assert sum((b - a for a, b in plan.slots), pd.Timedelta(0)) == duration
        assert all(a < b for a, b in plan.slots)
