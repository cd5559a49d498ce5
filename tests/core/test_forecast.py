"""Forecasters on real recorded data: shape, intervals, no look-ahead, and skill over seasonal naive."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carbon_sensors import embedded
from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError, NoDataError
from carbon_sensors.forecast import CalendarLagForecaster, SeasonalNaive, assemble_forecast
from carbon_sensors.forecast.base import target_matrix
from carbon_sensors.forecast.combine import (
    HorizonErrors,
    anchor_provider,
    blend,
    blend_weights,
    horizon_to,
    recent_errors,
)
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.signal import IntensitySignal, make_signal

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


class _WithForecast(TraceProvider):
    """The embedded trace, with a provider forecast of the next 10 hours that is the actual + 5."""

    @property
    def provides_forecast(self) -> bool:
        return True

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        future = self.signal(zone).between(START, START + pd.Timedelta(hours=10))
        return make_signal(future.values + 5.0, zone=zone, source="provider")


def test_assemble_blends_the_provider_and_our_model_per_hour_ahead() -> None:
    blended = assemble_forecast(_WithForecast(), "DE", START, pd.Timedelta(hours=24))
    alone = assemble_forecast(TraceProvider(), "DE", START, pd.Timedelta(hours=24), use_provider=False)
    assert len(blended) == 24 and blended.start == START
    assert "blend of provider" in blended.source and "provider weight" in blended.notes[0]
    actual = embedded.load("DE").values[START:].iloc[:10].to_numpy()
    # a 5 g provider error is far below the prior, so the blend leans to the provider; over the first hours the
    # anchor pulls the provider towards our model (their gap at the first hour is taken as its error)
    ours, mix = alone.values.to_numpy()[:10], blended.values.to_numpy()[:10]
    gap_ours, gap_mix = np.abs(ours - (actual + 5)), np.abs(mix - (actual + 5))
    assert gap_mix.mean() < 0.75 * gap_ours.mean()
    assert (gap_mix[4:] < gap_ours[4:]).all()
    assert blended.values.to_numpy()[10:] == pytest.approx(alone.values.to_numpy()[10:])  # model beyond
    assert (blended.lower <= blended.values).all() and (blended.values <= blended.upper).all()
    assert "our model alone" in alone.notes[0]


def test_a_forecast_to_a_deadline_reaches_it_from_mid_hour() -> None:
    """Reproduced: asked at 00:50 for the 50 min to a 01:40 deadline, the forecast (from the top of the hour)
    stopped at 01:00, so no window before the deadline had data and the hold fell back."""
    now, deadline = START + pd.Timedelta(minutes=50), START + pd.Timedelta(minutes=100)
    forecast = assemble_forecast(TraceProvider(), "DE", now, horizon_to(deadline, now), use_provider=False)
    assert forecast.start == START and forecast.end >= deadline
    assert horizon_to(START + pd.Timedelta(hours=2), START) == pd.Timedelta(hours=2)


def test_blend_weights_follow_measured_errors_and_skip_nan() -> None:
    provider = HorizonErrors(np.array([1.0, 9.0, np.inf]), "p")
    model = HorizonErrors(np.array([3.0, 1.0, 4.0]), "m")
    weight = blend_weights(provider, model)
    assert weight == pytest.approx([0.75, 0.1, 0.0])
    mixed = blend(np.array([10.0, 10.0, np.nan]), np.array([20.0, 20.0, 30.0]), weight)
    assert mixed == pytest.approx([12.5, 19.0, 30.0])


def test_anchor_provider_removes_its_first_hour_error_fading_with_the_hours_ahead() -> None:
    model = np.full(5, 100.0)
    anchored = anchor_provider(np.array([np.nan, 110.0, 110.0, 110.0, np.nan]), model, persistence=0.5)
    assert anchored[1:4] == pytest.approx([100.0, 105.0, 107.5]) and np.isnan(anchored[[0, 4]]).all()
    late = np.array([np.nan, np.nan, np.nan, 110.0, 110.0])  # first value too far ahead: left as it is
    assert anchor_provider(late, model)[3:] == pytest.approx([110.0, 110.0])
    # anchored on the first hour where both have a value (here the second)
    both = anchor_provider(np.array([110.0, 120.0]), np.array([np.nan, 100.0]), persistence=0.5)
    assert both == pytest.approx([100.0, 100.0])


def test_recent_errors_only_use_targets_before_now() -> None:
    values = np.arange(100.0)
    forecast = np.tile(np.arange(3.0), (100, 1)) + np.arange(100.0)[:, None]  # perfect
    forecast[60:] += 50.0  # bad issues after hour 60
    assert np.all(recent_errors(forecast, values, 60, 24).mse == 0.0)
    assert np.all(recent_errors(forecast, values, 70, 24).mse > 0.0)


def test_trace_replays_recorded_issues_as_they_were_issued() -> None:
    issues = Path(__file__).parents[1] / "fixtures" / "neso_fw48h_issues_sample.csv"
    source = TraceProvider(dataset="neso-2023", forecast_issues=issues)
    at = T("2023-03-14T06:10Z")
    issued = source.forecast("GB", at, pd.Timedelta(hours=12))
    assert issued.source == "recorded provider issue of 2023-03-14T03:31:00+00:00"
    assert issued.start == T("2023-03-14T06:00Z") and len(issued) == 12
    with pytest.raises(NoDataError, match="no recorded forecast issue"):
        source.forecast("GB", T("2023-03-14T03:00Z"), pd.Timedelta(hours=6))  # before the first issue
    blended = assemble_forecast(source, "GB", at, pd.Timedelta(hours=40))
    assert "blend of recorded provider issue" in blended.source and len(blended) == 40
    with pytest.raises(InvalidInputError, match="forecast='wishful'"):
        TraceProvider(forecast="wishful")  # type: ignore[arg-type]
