"""Our own forecaster: a ridge regression from the last week's values and the calendar to the next hours.

One multi-output scikit-learn `Ridge` predicts every horizon at once from the previous 168 hourly values
(relative to the latest one) and one-hot hour of day and day of week. It is linear, so fitting a year of
history takes milliseconds and the backtest can refit it every four weeks without ever seeing the future.
scikit-learn is imported on the first fit, not with this module: the Airflow and Prefect packages import the
forecast path, and a DAG parse must not pay for scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from carbon_sensors.errors import NoDataError
from carbon_sensors.forecast.base import (
    FittedForecaster,
    HourlyHistory,
    residual_quantiles,
    target_matrix,
)
from carbon_sensors.signal import IntensitySignal

if TYPE_CHECKING:
    from sklearn.linear_model import Ridge

# Strong shrinkage: 199 features per 48 outputs overfit a few weeks of history. On the 2023 history-only
# backtest (6 hardest zones) alpha 300 beat 10 by +0.013 of the oracle fitted on all prior history and by
# +0.045 fitted on 28 days; 1000 and more did worse. Fitted on 120 days (MODEL_HISTORY_DAYS), 100/300/1000 gave
# 0.833/0.832/0.827 (14 zones) and 0.652/0.658/0.641 (held out 2020): 300 stays.
RIDGE_ALPHA = 300.0


class CalendarLagForecaster(FittedForecaster):
    """Ridge on lag and calendar features; `fit(history)` then `predict(start, horizon)` with an 80% interval."""

    name = "calendar-lag-ridge"

    def __init__(self, *, lags: int = 168, max_horizon: int = 48, alpha: float = RIDGE_ALPHA) -> None:
        self.lags = lags
        self.max_horizon = max_horizon
        self.alpha = alpha
        self.scale_: float = 1.0
        self.model_: Ridge | None = None
        self.history_: HourlyHistory | None = None
        self.bands_: np.ndarray | None = None

    @property
    def min_history_hours(self) -> int:
        return self.lags + self.max_horizon + 48

    def fit(self, history: IntensitySignal) -> CalendarLagForecaster:
        hist = HourlyHistory.from_signal(history, min_hours=self.min_history_hours)
        return self.fit_array(hist)

    def fit_array(self, hist: HourlyHistory) -> CalendarLagForecaster:
        """Fit on an hourly history (the backtest's entry point: no signal round trip per refit)."""
        from sklearn.linear_model import Ridge

        values = hist.values
        if len(values) < self.min_history_hours:
            raise NoDataError(f"{hist.zone}: {len(values)} hours of history; {self.min_history_hours} needed")
        issue = np.arange(self.lags, len(values) - self.max_horizon + 1)
        self.scale_ = float(np.std(values)) or 1.0
        features, latest = self._features(values, issue, hist.start)
        target = (target_matrix(values, issue, self.max_horizon) - latest[:, None]) / self.scale_
        self.model_ = Ridge(alpha=self.alpha).fit(features, target)
        predicted = self.predict_array(values, issue, hist.start)
        self.bands_ = residual_quantiles(predicted, target_matrix(values, issue, self.max_horizon))
        self.history_ = hist
        return self

    def predict_array(self, values: np.ndarray, issue: np.ndarray, first_hour: pd.Timestamp) -> np.ndarray:
        """Forecasts issued at each position in `issue` from the values before it: (len(issue), horizon)."""
        if self.model_ is None:
            raise NoDataError("CalendarLagForecaster.predict_array called before fit(history)")
        out = np.full((len(issue), self.max_horizon), np.nan)
        ok = issue >= self.lags
        if ok.any():
            features, latest = self._features(values, issue[ok], first_hour)
            out[ok] = self.model_.predict(features) * self.scale_ + latest[:, None]
        return out

    def _features(
        self, values: np.ndarray, issue: np.ndarray, first_hour: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray]:
        windows = np.lib.stride_tricks.sliding_window_view(values, self.lags)[issue - self.lags]
        latest = values[issue - 1]
        hours = first_hour.hour + issue
        hour_of_day = (hours % 24)[:, None] == np.arange(24)[None, :]
        day_of_week = ((first_hour.day_of_week + hours // 24) % 7)[:, None] == np.arange(7)[None, :]
        features = np.hstack([(windows - latest[:, None]) / self.scale_, hour_of_day, day_of_week])
        return features, latest
