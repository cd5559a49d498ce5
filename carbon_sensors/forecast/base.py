"""What every forecaster shares: the fit/predict shape, hourly arrays, and signals with prediction intervals.

Forecasters work on an hourly numpy array internally so the backtest can ask for thousands of forecasts at
once (`predict_array`); `predict` is the same computation for one issue time, returned as a signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from carbon_sensors.errors import InvalidInputError, NoDataError
from carbon_sensors.signal import IntensitySignal, SignalKind, make_signal
from carbon_sensors.timeutil import require_utc

HOUR = pd.Timedelta(hours=1)
INTERVAL_QUANTILES = (0.1, 0.9)  # an 80% prediction interval


class Forecaster(Protocol):
    """scikit-learn shape: `fit(history)` learns, `predict(start, horizon)` answers; no other hidden state."""

    name: str
    max_horizon: int

    def fit(self, history: IntensitySignal) -> Forecaster: ...

    def predict(self, start: datetime, horizon: timedelta) -> IntensitySignal: ...

    def predict_array(
        self, values: np.ndarray, issue: np.ndarray, first_hour: pd.Timestamp
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class HourlyHistory:
    """A signal as a gap-free hourly array starting at `start` (short gaps interpolated, counted in `filled`)."""

    start: pd.Timestamp
    values: np.ndarray
    zone: str
    kind: SignalKind
    source: str
    filled: int

    @classmethod
    def from_signal(cls, signal: IntensitySignal, *, min_hours: int) -> HourlyHistory:
        hourly = signal.to_hourly().values.dropna()
        if hourly.empty:
            raise NoDataError(f"{signal.zone} ({signal.source}): no usable values to fit a forecaster on")
        hours = pd.DatetimeIndex(hourly.index).floor("h")
        full = pd.date_range(hours[0], hours[-1], freq="h", tz="UTC")
        series = hourly.groupby(hours).mean().reindex(full)
        filled = int(series.isna().sum())
        series = series.interpolate(limit_direction="both")
        if len(series) < min_hours:
            raise NoDataError(
                f"{signal.zone} ({signal.source}): {len(series)} hour(s) of history; at least {min_hours} "
                "are needed to fit this forecaster"
            )
        return cls(
            pd.Timestamp(full[0]),
            series.to_numpy(dtype="float64"),
            signal.zone,
            signal.kind,
            signal.source,
            filled,
        )

    @property
    def end(self) -> pd.Timestamp:
        """Start of the first hour after the history."""
        return self.start + len(self.values) * HOUR


class FittedForecaster:
    """`predict` for forecasters whose fit keeps the hourly history and per-horizon interval offsets."""

    name = "forecaster"
    max_horizon = 48
    history_: HourlyHistory | None = None
    bands_: np.ndarray | None = None

    def predict(self, start: datetime, horizon: timedelta) -> IntensitySignal:
        """The forecast issued at `start` (the first hour after the fitted history) for `horizon`."""
        if self.history_ is None or self.bands_ is None:
            raise NoDataError(f"{type(self).__name__}.predict called before fit(history)")
        hours = horizon_hours(horizon, self.max_horizon)
        pos = issue_position(self.history_, start)
        values = self.predict_array(self.history_.values, np.array([pos]), self.history_.start)[0, :hours]
        return forecast_signal(
            self.history_, values, self.bands_, source=f"{self.name} on {self.history_.source}"
        )

    def predict_array(self, values: np.ndarray, issue: np.ndarray, first_hour: pd.Timestamp) -> np.ndarray:
        raise NotImplementedError


def horizon_hours(horizon: timedelta, max_horizon: int) -> int:
    """Whole hours in `horizon` (rounded up); refuses a horizon longer than the model was trained for."""
    hours = int(np.ceil(pd.Timedelta(horizon) / HOUR))
    if hours <= 0 or hours > max_horizon:
        raise InvalidInputError(f"horizon={horizon} must be between 1 hour and {max_horizon} hours")
    return hours


def issue_position(history: HourlyHistory, start: datetime) -> int:
    """Index of the first forecast hour: the hour right after the history (a later start is refused)."""
    ts = require_utc(start, "start").floor("h")
    if ts != history.end:
        raise InvalidInputError(
            f"start={ts.isoformat()} must be the first hour after the fitted history "
            f"({history.end.isoformat()}); fit on history up to the start you forecast from"
        )
    return len(history.values)


def residual_quantiles(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-horizon residual quantiles (shape 2 x horizon) giving the prediction interval around a forecast."""
    residuals = actual - predicted
    if residuals.shape[0] == 0:
        return np.zeros((2, predicted.shape[1]))
    return np.asarray(np.nanquantile(residuals, INTERVAL_QUANTILES, axis=0))


def forecast_signal(
    history: HourlyHistory,
    values: np.ndarray,
    bands: np.ndarray,
    *,
    source: str,
    notes: tuple[str, ...] = (),
) -> IntensitySignal:
    """Wrap one issued forecast (hourly values from the end of `history`) with its interval as a signal."""
    index = pd.date_range(history.end, periods=len(values), freq="h", tz="UTC")
    clipped = np.clip(values, 0.0, None)
    return make_signal(
        pd.Series(clipped, index=index),
        zone=history.zone,
        kind=history.kind,
        source=source,
        resolution=HOUR,
        lower=pd.Series(np.clip(values + bands[0, : len(values)], 0.0, None), index=index, name="lower"),
        upper=pd.Series(np.clip(values + bands[1, : len(values)], 0.0, None), index=index, name="upper"),
        issued_at=history.end,
        notes=notes,
    )


def target_matrix(values: np.ndarray, issue: np.ndarray, horizon: int) -> np.ndarray:
    """Actual values after each issue position (NaN beyond the data): the truth a forecast is scored on."""
    idx = issue[:, None] + np.arange(horizon)[None, :]
    out = np.full(idx.shape, np.nan)
    inside = idx < len(values)
    out[inside] = values[idx[inside]]
    return out
