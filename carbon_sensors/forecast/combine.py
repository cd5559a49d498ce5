"""Putting forecasts together: the provider's forecast where it exists, ours beyond its horizon; and
inverse-variance blending of several forecasts of the same hours (provider, older issues, our model)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.forecast.base import Forecaster
from carbon_sensors.signal import IntensitySignal
from carbon_sensors.timeutil import require_utc


def provider_then_model(
    provider: IntensitySignal | None, model: Forecaster, start: datetime, horizon: timedelta
) -> IntensitySignal:
    """The provider's hourly forecast from `start`, extended with `model` (fitted up to `start`) past its end.

    With no provider forecast (None or empty) the model answers alone; the source label says which did what.
    """
    begin = require_utc(start, "start").floor("h")
    ours = model.predict(begin, horizon)
    if provider is None or provider.values.dropna().empty:
        return ours
    if provider.kind != ours.kind:
        raise InvalidInputError(
            f"provider forecast is {provider.kind.value} but the model was fitted on {ours.kind.value} data"
        )
    theirs = provider.to_hourly().between(begin, begin + pd.Timedelta(horizon))
    known = theirs.values.dropna()
    if known.empty:
        return ours
    cutoff = known.index[-1] + pd.Timedelta(hours=1)
    later = ours.values.index >= cutoff

    def join(first: pd.Series | None, second: pd.Series | None, fallback: pd.Series) -> pd.Series:
        head = (first if first is not None else fallback).reindex(ours.values.index[~later])
        head = head.fillna(ours.values[~later])
        tail = (second if second is not None else ours.values)[later]
        return pd.Series(pd.concat([head, tail]))

    values = join(known, ours.values, ours.values)
    return replace(
        ours,
        values=values.rename("intensity"),
        lower=join(theirs.lower, ours.lower, values),
        upper=join(theirs.upper, ours.upper, values),
        source=f"{provider.source} to {cutoff.isoformat()}, then {ours.source}",
        issued_at=provider.issued_at or ours.issued_at,
        notes=(*ours.notes, f"provider forecast used up to {cutoff.isoformat()}, {model.name} beyond"),
    )


def inverse_variance_blend(forecasts: list[np.ndarray], variances: list[np.ndarray]) -> np.ndarray:
    """Blend forecasts of the same hours, each weighted by 1 / its error variance (NaN entries are skipped).

    Each forecast has shape (issues, horizon); each variance broadcasts against it (e.g. one per horizon).
    Independent errors shrink when blended; correlated ones much less, so weights come from past errors.
    """
    if not forecasts or len(forecasts) != len(variances):
        raise InvalidInputError("inverse_variance_blend needs one variance per forecast, and at least one")
    total = np.zeros(np.shape(forecasts[0]))
    weight = np.zeros_like(total)
    for forecast, variance in zip(forecasts, variances, strict=True):
        w = np.where(np.isfinite(forecast), 1.0 / np.maximum(variance, 1e-9), 0.0)
        total += np.where(w > 0, np.nan_to_num(forecast), 0.0) * w
        weight += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
