"""Seasonal naive: tomorrow looks like today. The floor every other forecaster must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from carbon_sensors.forecast.base import (
    FittedForecaster,
    HourlyHistory,
    residual_quantiles,
    target_matrix,
)
from carbon_sensors.signal import IntensitySignal


class SeasonalNaive(FittedForecaster):
    """The value one season (default a day) earlier; for horizons past a season, whole seasons earlier."""

    name = "seasonal-naive"

    def __init__(self, *, season_hours: int = 24, max_horizon: int = 48) -> None:
        self.season_hours = season_hours
        self.max_horizon = max_horizon
        self.history_: HourlyHistory | None = None
        self.bands_: np.ndarray | None = None

    def fit(self, history: IntensitySignal) -> SeasonalNaive:
        hist = HourlyHistory.from_signal(history, min_hours=self.max_horizon + self.season_hours)
        back = self.season_hours * int(np.ceil(self.max_horizon / self.season_hours))
        issue = np.arange(back, len(hist.values) - self.max_horizon + 1)
        predicted = self.predict_array(hist.values, issue, hist.start)
        self.bands_ = residual_quantiles(predicted, target_matrix(hist.values, issue, self.max_horizon))
        self.history_ = hist
        return self

    def predict_array(self, values: np.ndarray, issue: np.ndarray, first_hour: pd.Timestamp) -> np.ndarray:
        """Forecasts issued at each position in `issue` (only earlier values used): shape (len(issue), horizon)."""
        k = np.arange(self.max_horizon)[None, :]
        seasons_back = self.season_hours * np.ceil((k + 1) / self.season_hours).astype(int)
        source = issue[:, None] + k - seasons_back
        out = np.full(source.shape, np.nan)
        ok = source >= 0
        out[ok] = values[source[ok]]
        return out
