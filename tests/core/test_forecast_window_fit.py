"""`ForecastWindowStrategy` fits our model once per hour of `now`, not on every decision (a fit is ~0.25 s)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ForecastWindowStrategy

NOW = pd.Timestamp("2023-06-01T08:10Z")
DEADLINE = pd.Timestamp("2023-06-02T06:00Z")
WORK = timedelta(hours=3)


def test_decisions_within_one_hour_share_one_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    fits: list[pd.Timestamp] = []
    real_fit = CalendarLagForecaster.fit_array

    def counted(self: CalendarLagForecaster, hist: object) -> CalendarLagForecaster:
        fits.append(pd.Timestamp.now("UTC"))
        return real_fit(self, hist)  # type: ignore[arg-type]

    monkeypatch.setattr(CalendarLagForecaster, "fit_array", counted)
    strategy = ForecastWindowStrategy(TraceProvider(), "DE", use_source_forecast=False)
    first = strategy.decide(NOW, remaining_work=WORK, deadline=DEADLINE)
    per_fit = len(fits)  # a held-out fit to measure its errors, then the fit on all history
    assert per_fit >= 1
    again = strategy.decide(NOW + timedelta(minutes=40), remaining_work=WORK, deadline=DEADLINE)
    assert len(fits) == per_fit, "a second decision in the same hour refitted the model"
    assert again.action is first.action
    strategy.decide(NOW + timedelta(hours=1), remaining_work=WORK, deadline=DEADLINE)
    assert len(fits) == 2 * per_fit, "the next hour's decision must fit on the newer history"
    reused = strategy.forecast(NOW + timedelta(minutes=50))  # the next hour's fit, reused
    assert len(fits) == 2 * per_fit
    fresh = ForecastWindowStrategy(TraceProvider(), "DE", use_source_forecast=False)
    fitted_now = fresh.forecast(NOW + timedelta(hours=1, minutes=5))
    assert len(fits) == 3 * per_fit, "the fit is kept by the strategy instance, not shared process-wide"
    assert reused.to_dict() == fitted_now.to_dict(), "a reused fit must forecast what a new fit does"
