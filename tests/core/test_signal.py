"""The signal type: its checks at creation, selection, gaps, kinds never mixed, JSON output."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from carbon_sensors.errors import IncompatibleSignalsError, InvalidInputError, NaiveDatetimeError, NoDataError
from carbon_sensors.signal import IntensitySignal, SignalKind, make_signal


def _hourly(values: list[float], start: str = "2023-06-01T00:00Z", **kw: object) -> IntensitySignal:
    index = pd.date_range(start, periods=len(values), freq="1h")
    return make_signal(pd.Series(values, index=index), zone="DE", source="test", **kw)  # type: ignore[arg-type]


def test_value_at_picks_the_period_containing_the_moment() -> None:
    sig = _hourly([100.0, 200.0, 300.0])
    assert sig.value_at(pd.Timestamp("2023-06-01T01:59Z")) == 200.0
    assert sig.value_at(pd.Timestamp("2023-06-01T02:00Z")) == 300.0
    with pytest.raises(NoDataError, match="no value at 2023-06-01T03:00:00\\+00:00; data covers"):
        sig.value_at(pd.Timestamp("2023-06-01T03:00Z"))


def test_naive_datetimes_are_rejected_with_a_hint() -> None:
    sig = _hourly([100.0, 200.0])
    with pytest.raises(NaiveDatetimeError, match=r"moment=2023-06-01 01:00:00 has no time zone.*tzinfo"):
        sig.value_at(datetime(2023, 6, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(NaiveDatetimeError):
        sig.between(datetime(2023, 6, 1), pd.Timestamp("2023-06-02T00:00Z"))  # noqa: DTZ001


def test_index_must_be_utc_and_unique() -> None:
    naive = pd.Series([1.0, 2.0], index=pd.date_range("2023-06-01", periods=2, freq="1h"))
    with pytest.raises(InvalidInputError, match="tz-aware UTC"):
        make_signal(naive, zone="DE", source="test")
    berlin = naive.tz_localize("Europe/Berlin")
    with pytest.raises(InvalidInputError, match="tz=Europe/Berlin"):
        make_signal(berlin, zone="DE", source="test")
    dup = pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2023-06-01T00:00Z"] * 2))
    with pytest.raises(InvalidInputError, match="without duplicates"):
        make_signal(dup, zone="DE", source="test")


def test_between_is_half_open_and_checks_order() -> None:
    sig = _hourly([1.0, 2.0, 3.0, 4.0])
    part = sig.between(pd.Timestamp("2023-06-01T01:00Z"), pd.Timestamp("2023-06-01T03:00Z"))
    assert part.values.tolist() == [2.0, 3.0]
    with pytest.raises(InvalidInputError, match="must be after start"):
        sig.between(pd.Timestamp("2023-06-01T03:00Z"), pd.Timestamp("2023-06-01T01:00Z"))


def test_gaps_count_missing_rows_and_nans() -> None:
    index = pd.DatetimeIndex(
        ["2023-06-01T00:00Z", "2023-06-01T01:00Z", "2023-06-01T04:00Z", "2023-06-01T05:00Z"]
    )
    sig = make_signal(
        pd.Series([1.0, float("nan"), 3.0, 4.0], index=index),
        zone="DE",
        source="t",
        resolution=pd.Timedelta(hours=1),
    )
    assert sig.gaps() == [(pd.Timestamp("2023-06-01T01:00Z"), pd.Timestamp("2023-06-01T04:00Z"))]


def test_average_and_marginal_never_mix() -> None:
    avg = _hourly([100.0])
    marginal = _hourly([400.0], kind=SignalKind.MARGINAL)
    with pytest.raises(
        IncompatibleSignalsError, match=r"cannot combine the average signal .* with the marginal signal"
    ):
        avg.require_compatible(marginal)
    with pytest.raises(InvalidInputError, match="signal kind 'moer' is not valid"):
        _hourly([1.0], kind="moer")


def test_to_dict_is_json_with_units_and_intervals() -> None:
    sig = _hourly([100.0, 110.0])
    band = IntensitySignal(
        sig.values,
        "DE",
        SignalKind.AVERAGE,
        "model",
        sig.resolution,
        lower=sig.values - 10,
        upper=sig.values + 10,
    )
    doc = band.to_dict()
    assert doc["unit"] == "gCO2eq/kWh"
    assert doc["resolution_seconds"] == 3600
    assert doc["data"][1] == {
        "timestamp": "2023-06-01T01:00:00+00:00",
        "value": 110.0,
        "lower": 100.0,
        "upper": 120.0,
    }
    assert band.label == "DE average gCO2eq/kWh from model"


def test_to_hourly_averages_finer_data() -> None:
    index = pd.date_range("2023-06-01T00:00Z", periods=4, freq="30min")
    sig = make_signal(pd.Series([100.0, 200.0, 300.0, 500.0], index=index), zone="GB", source="t")
    assert sig.to_hourly().values.tolist() == [150.0, 400.0]
