"""Forecasters on real recorded data: shape, intervals, no look-ahead, and skill over seasonal naive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carbon_sensors import embedded
from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError, NoDataError
from carbon_sensors.forecast import (
    CalendarLagForecaster,
    SeasonalNaive,
    inverse_variance_blend,
    provider_then_model,
)
from carbon_sensors.forecast.base import target_matrix
from carbon_sensors.signal import make_signal

T = pd.Timestamp
START = T("2023-03-01T00:00Z")


def history(zone: str = "DE", days: int = 60) -> tuple[pd.Series, pd.Series]:
    whole = embedded.load(zone).values
    return whole[START - pd.Timedelta(days=days) : START - pd.Timedelta(hours=1)], whole[START:]


@pytest.mark.parametrize("forecaster", [SeasonalNaive(), CalendarLagForecaster()], ids=lambda f: f.name)
def test_predict_gives_hourly_signal_with_interval(forecaster: SeasonalNaive | CalendarLagForecaster) -> None:
    past, _ = history()
    forecast = forecaster.fit(make_signal(past, zone="DE", source="em")).predict(
        START, pd.Timedelta(hours=24)
    )
    assert len(forecast) == 24 and forecast.start == START
    assert forecast.lower is not None and forecast.upper is not None
    assert (forecast.lower <= forecast.values).all() and (forecast.values <= forecast.upper).all()
    assert forecast.issued_at == START and forecast.zone == "DE"


def test_seasonal_naive_repeats_yesterday() -> None:
    past, _ = history()
    forecast = (
        SeasonalNaive().fit(make_signal(past, zone="DE", source="em")).predict(START, pd.Timedelta(hours=30))
    )
    assert forecast.values.iloc[:24].to_numpy() == pytest.approx(past.iloc[-24:].to_numpy())
    assert forecast.values.iloc[24:].to_numpy() == pytest.approx(past.iloc[-24:-18].to_numpy())


def test_predict_array_uses_only_values_before_each_issue() -> None:
    past, future = history(days=40)
    values = np.concatenate([past.to_numpy(), future.to_numpy()[:48]])
    model = CalendarLagForecaster().fit(make_signal(past, zone="DE", source="em"))
    issue = np.array([len(past)])
    before = model.predict_array(values, issue, past.index[0])
    tampered = values.copy()
    tampered[len(past) :] = 9999.0
    assert model.predict_array(tampered, issue, past.index[0]) == pytest.approx(before)


@pytest.mark.parametrize("zone", ["DE", "US-TEX-ERCO"])
def test_model_beats_seasonal_naive_on_held_out_weeks(zone: str) -> None:
    past, future = history(zone, days=120)
    values = np.concatenate([past.to_numpy(), future.to_numpy()[: 24 * 21]])
    issue = np.arange(len(past), len(values) - 48)
    truth = target_matrix(values, issue, 48)
    naive = SeasonalNaive().predict_array(values, issue, past.index[0])
    model = CalendarLagForecaster().fit(make_signal(past, zone=zone, source="em"))
    ours = model.predict_array(values, issue, past.index[0])
    for lo, hi in ((0, 6), (6, 24)):
        assert np.abs(ours - truth)[:, lo:hi].mean() < np.abs(naive - truth)[:, lo:hi].mean()


def test_bad_inputs_are_refused() -> None:
    past, _ = history()
    model = CalendarLagForecaster().fit(make_signal(past, zone="DE", source="em"))
    with pytest.raises(InvalidInputError, match="first hour after the fitted history"):
        model.predict(START + pd.Timedelta(hours=5), pd.Timedelta(hours=3))
    with pytest.raises(InvalidInputError, match="horizon"):
        model.predict(START, pd.Timedelta(hours=72))
    with pytest.raises(NaiveDatetimeError):
        model.predict(START.tz_localize(None), pd.Timedelta(hours=3))
    with pytest.raises(NoDataError, match="before fit"):
        SeasonalNaive().predict(START, pd.Timedelta(hours=3))
    short = make_signal(past.iloc[:50], zone="DE", source="em")
    with pytest.raises(NoDataError, match="hour"):
        CalendarLagForecaster().fit(short)
    all_nan = make_signal(past * np.nan, zone="DE", source="em")
    with pytest.raises(NoDataError, match="no usable values"):
        SeasonalNaive().fit(all_nan)


def test_provider_forecast_then_model_beyond_its_horizon() -> None:
    past, future = history()
    model = CalendarLagForecaster().fit(make_signal(past, zone="DE", source="em"))
    provider = make_signal(future.iloc[:10], zone="DE", source="provider")
    combined = provider_then_model(provider, model, START, pd.Timedelta(hours=24))
    assert len(combined) == 24
    assert combined.values.iloc[:10].to_numpy() == pytest.approx(future.iloc[:10].to_numpy())
    ours = model.predict(START, pd.Timedelta(hours=24))
    assert combined.values.iloc[10:].to_numpy() == pytest.approx(ours.values.iloc[10:].to_numpy())
    assert "provider" in combined.source and model.name in combined.source
    assert provider_then_model(None, model, START, pd.Timedelta(hours=24)).source == ours.source


def test_inverse_variance_blend_weights_and_skips_nan() -> None:
    a = np.array([[10.0, np.nan]])
    b = np.array([[20.0, 30.0]])
    blended = inverse_variance_blend([a, b], [np.array([1.0, 1.0]), np.array([3.0, 3.0])])
    assert blended == pytest.approx(np.array([[12.5, 30.0]]))
    with pytest.raises(InvalidInputError):
        inverse_variance_blend([a], [])
