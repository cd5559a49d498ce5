"""The product's forecast: the provider's forecast and our own model, blended per horizon.

One place builds the forecast the live paths plan on (the `plan` CLI, `ForecastWindowStrategy`, the Airflow
window, the Prefect wait; under replay also the trace source's own forecast) and the backtest scores: `assemble_forecast` for a source, or
`anchor_provider` + `blend` + `blend_weights` on arrays. Why a blend: on real NESO issues our model is better for the next hour or
two (it starts from the latest actual) and the provider is better beyond, and the two errors are only weakly
correlated, so an inverse-variance blend per horizon beats both (LESSONS: 0.84 of the oracle vs 0.79/0.72).

Weights come from measured errors: our model's are measured on the history the product fetched anyway (the
model fitted on all but the last week forecasts that week); the provider's come from a prior calibrated on
real NESO issues (MAPE 12% at 1 h rising to 16% from 6 h on), scaled to the level of the recent history.
Measured and left out (benchmarks/results/backtest-*.json): provider weights learnt from its own past issues
(a local issue archive) did worse on real issues than the prior, so no archive is kept. Before blending,
the provider's forecast is anchored: shifted by its gap to our model on its first hour, fading with the hours
ahead (`anchor_provider`), because real provider errors persist along targets and our model starts from the
latest actual (real NESO sample: 0.72 -> 0.80 of the oracle, whole jobs, seeds 0-3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from carbon_sensors.errors import (
    AuthenticationError,
    CarbonAwareError,
    InvalidInputError,
    MissingCredentialsError,
    NoDataError,
    UnknownZoneError,
)
from carbon_sensors.forecast.base import HOUR, HourlyHistory, target_matrix
from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.signal import IntensitySignal, make_signal
from carbon_sensors.timeutil import require_utc

MODEL_HISTORY_DAYS = 120
"""Days of history the live paths fit our model on (and the backtest refits on: one policy for both).

Measured (backtest, whole jobs re-planned hourly): 28 -> 56 -> 120 days gave 0.80 -> 0.82 -> 0.83 on the 14
zones of 2023 (seed 0), 0.62 -> 0.64 held out (2020, seeds 0-4) and 0.71 -> 0.78 on the real NESO issues
(seeds 0-3); all history did no better on 2023. One fetch per zone and hour (NESO: 9 calls of 14 days,
Electricity Maps: 12 of 10), cached; a fit on 120 days takes about 0.2 s."""

if TYPE_CHECKING:
    from carbon_sensors.providers.base import IntensitySource

log = logging.getLogger(__name__)

SOURCE_ERRORS = (CarbonAwareError, OSError, TimeoutError)
# errors that another try cannot fix: raised as they are, never replaced by the other forecast
PERMANENT_ERRORS = (UnknownZoneError, AuthenticationError, MissingCredentialsError, InvalidInputError)
PROVIDER_PRIOR_MAPE_1H = 0.12  # real NESO national issues, March-December 2023 (148 issues)
PROVIDER_PRIOR_MAPE_6H = 0.16  # ... and from 6 h ahead on; linear in between
ERROR_WINDOW_H = 7 * 24  # our model's errors are measured on the last week of history
Z80 = 1.2816  # half-width of an 80% normal interval, in standard deviations
# How much of the provider's error on its first hour is still there k hours later (per hour, so 0.97^24 ~ 0.48).
# Chosen on the real NESO March-2023 sample, the only real issues we hold: 0.72 -> 0.78/0.80/0.80/0.79 of the
# oracle for 0.9/0.95/0.97/1.0 (whole jobs, seeds 0-3); a plateau, so not a sharp fit to that sample.
PROVIDER_ERROR_PERSISTENCE = 0.97
ANCHOR_WITHIN_H = 3  # the provider's first valued hour must be this close to now to anchor on


@dataclass(frozen=True)
class HorizonErrors:
    """Mean squared error per hour ahead (index 0 = the hour that starts at the issue), and how it was had."""

    mse: np.ndarray
    how: str

    @classmethod
    def measured(cls, forecast: np.ndarray, truth: np.ndarray, how: str) -> HorizonErrors:
        """From past forecasts (rows) against what happened; an hour ahead never observed gets +inf."""
        err2 = (forecast - truth) ** 2
        seen = np.isfinite(err2)
        count = seen.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = np.where(count > 0, np.where(seen, err2, 0.0).sum(axis=0) / np.maximum(count, 1), np.inf)
        return cls(np.asarray(mse, dtype="float64"), how)

    @classmethod
    def provider_prior(cls, level: float, horizon: int) -> HorizonErrors:
        """The provider's error before any is measured: NESO's real MAPE curve times the recent mean level."""
        ahead = np.arange(1, horizon + 1)
        rise = np.clip((ahead - 1) / 5, 0.0, 1.0)
        mape = PROVIDER_PRIOR_MAPE_1H + rise * (PROVIDER_PRIOR_MAPE_6H - PROVIDER_PRIOR_MAPE_1H)
        mae = mape * max(level, 1.0)
        how = (
            f"prior: NESO's real MAPE {PROVIDER_PRIOR_MAPE_1H:.0%} at 1 h to {PROVIDER_PRIOR_MAPE_6H:.0%} "
            f"from 6 h, times the recent mean {level:.0f}"
        )
        return cls((mae * np.sqrt(np.pi / 2)) ** 2, how)


def recent_errors(forecast: np.ndarray, values: np.ndarray, now: int, window: int) -> HorizonErrors:
    """Errors of the forecasts in `forecast` (row i issued at hour i) on targets in [now - window, now).

    Only targets before `now` count, so at `now` this uses nothing a user would not have known then.
    """
    horizon = forecast.shape[1]
    rows = np.arange(max(0, now - window - horizon), min(now, len(forecast)))
    truth = target_matrix(values[:now], rows, horizon)
    target = rows[:, None] + np.arange(horizon)[None, :]
    truth[target < now - window] = np.nan
    return HorizonErrors.measured(
        forecast[rows], truth, f"measured on {window} h of targets before the issue"
    )


def blend_weights(provider: HorizonErrors, model: HorizonErrors) -> np.ndarray:
    """The provider's weight per hour ahead: inverse-variance, 1 where our model is unmeasured."""
    pm, mm = provider.mse, model.mse[: len(provider.mse)]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(np.isfinite(mm), mm / (pm + mm), 1.0)
    return np.asarray(np.where(np.isfinite(pm), weight, 0.0))


def anchor_provider(
    provider: np.ndarray, model: np.ndarray, persistence: float = PROVIDER_ERROR_PERSISTENCE
) -> np.ndarray:
    """The provider's forecast corrected by its error on its first hour, fading by `persistence` per hour.

    Why: real provider errors persist along targets (NESO: a windy day stays under-forecast for hours), and
    our model starts from the latest actual, so near now it is the better estimate of the level. The gap
    between the two on the provider's first valued hour (within ANCHOR_WITHIN_H of now) is taken as the
    provider's current error. Unchanged when either has no value there.
    """
    valued = np.flatnonzero(np.isfinite(provider[:ANCHOR_WITHIN_H]) & np.isfinite(model[:ANCHOR_WITHIN_H]))
    if len(valued) == 0:
        return provider
    first = int(valued[0])
    error = provider[first] - model[first]
    fade = persistence ** np.abs(np.arange(len(provider)) - first)
    return np.asarray(provider - error * fade)


def blend(provider: np.ndarray, model: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """weight x provider + (1 - weight) x model per hour ahead; our model alone where the provider is NaN."""
    mixed = weight * provider + (1 - weight) * model
    return np.asarray(np.where(np.isfinite(provider), mixed, model))


def blended_mse(provider: HorizonErrors, model: HorizonErrors, weight: np.ndarray) -> np.ndarray:
    """Error variance of the blend (errors taken as independent), for the prediction interval."""
    pm, mm = provider.mse, model.mse[: len(provider.mse)]
    pm_ = np.where(np.isfinite(pm), pm, 0.0)
    mm_ = np.where(np.isfinite(mm), mm, 0.0)
    return np.asarray(weight**2 * pm_ + (1 - weight) ** 2 * mm_)


def assemble_forecast(
    source: IntensitySource,
    zone: str,
    start: datetime,
    horizon: timedelta,
    *,
    history: timedelta = timedelta(days=MODEL_HISTORY_DAYS),
    use_provider: bool = True,
    fit: Fit | None = None,
) -> IntensitySignal:
    """The product's forecast for `zone` from the hour containing `start`: provider and our model, blended.

    Our model is fitted on `history` of the source's history before `start`; the provider's forecast is asked
    when `use_provider` and the source offers one. Either alone answers when the other cannot be had (logged,
    and said in the signal's source); with neither, the source's own error is raised, as are errors no retry
    fixes (unknown zone, bad credentials, bad input). A source whose forecast is exact by
    construction (`forecast_is_exact`: a replay of the recorded future, asked for by name) is not blended.
    `fit` fits our model (default `fit_model`); a caller deciding often passes a `ModelPerHour` to reuse a fit.
    """
    begin = require_utc(start, "start").floor("h")
    hours = max(1, int(np.ceil(pd.Timedelta(horizon) / HOUR)))
    provider: IntensitySignal | None = None
    if use_provider and getattr(source, "provides_forecast", True):
        try:
            provider = source.forecast(zone, begin, pd.Timedelta(hours=hours))
        except PERMANENT_ERRORS:
            raise
        except SOURCE_ERRORS as exc:
            log.info("%s: no provider forecast (%s); using our model only", zone, exc)
    exact = bool(getattr(source, "forecast_is_exact", False))
    if exact and provider is not None and _covers(provider, begin, hours):
        return provider
    try:
        past = source.history(zone, begin - pd.Timedelta(history), begin)
        ours = (fit or fit_model)(past, begin, hours)
    except PERMANENT_ERRORS:
        raise
    except SOURCE_ERRORS as exc:
        if provider is None or provider.values.dropna().empty:
            raise  # neither forecast can be had: the source's own (typed) error says why
        log.info("%s: our model cannot be fitted (%s); using the provider's forecast only", zone, exc)
        return provider
    return combine_forecasts(provider, ours, begin, hours, exact=exact)


def horizon_to(deadline: datetime, now: datetime) -> timedelta:
    """The horizon to ask `assemble_forecast` for from `now` so that its forecast, which starts at the top of
    now's hour, reaches `deadline` (from 10:50 to 11:40 is two hours of forecast, not one)."""
    return require_utc(deadline, "deadline") - require_utc(now, "now").floor("h")


def _covers(signal: IntensitySignal, begin: pd.Timestamp, hours: int) -> bool:
    """Whether `signal` has a value for every hour of [begin, begin + hours)."""
    index = pd.date_range(begin, periods=hours, freq="h", tz="UTC")
    return bool(signal.to_hourly().values.reindex(index).notna().all())


@dataclass(frozen=True)
class ModelForecast:
    """Our model's forecast from one issue hour, with its errors measured on the history before it."""

    history: HourlyHistory
    values: np.ndarray
    errors: HorizonErrors
    source: str


def fit_model(past: IntensitySignal, begin: pd.Timestamp, hours: int) -> ModelForecast:
    """Fit our model on `past` (up to `begin`), measure its errors on the last week, forecast `hours`."""
    hist = HourlyHistory.from_signal(past, min_hours=1)
    if hist.end != begin:
        hist = _pad_to(hist, begin)
    model = CalendarLagForecaster(max_horizon=max(48, hours))
    values = hist.values
    errors = HorizonErrors(np.full(model.max_horizon, np.inf), "not measured: history too short")
    cut = len(values) - ERROR_WINDOW_H
    if cut >= model.min_history_hours:
        model.fit_array(replace(hist, values=values[:cut]))
        issue = np.arange(cut, len(values))
        held_out = np.full((len(values), model.max_horizon), np.nan)
        held_out[issue] = model.predict_array(values, issue, hist.start)
        errors = recent_errors(held_out, values, len(values), ERROR_WINDOW_H)
    model.fit_array(hist)
    forecast = model.predict_array(values, np.array([len(values)]), hist.start)[0, :hours]
    return ModelForecast(hist, forecast, errors, f"{model.name} on {hist.source}")


Fit = Callable[[IntensitySignal, pd.Timestamp, int], ModelForecast]


class ModelPerHour:
    """`fit_model` at most once per (zone, issue hour, hours ahead): the fit costs about 0.25 s, and a strategy
    re-planned on every poke asks many times an hour. Only the latest fit is kept (issue hours only move on),
    and within its hour history that arrives later is not refitted on."""

    def __init__(self) -> None:
        self._latest: tuple[tuple[str, pd.Timestamp, int], ModelForecast] | None = None

    def __call__(self, past: IntensitySignal, begin: pd.Timestamp, hours: int) -> ModelForecast:
        key = (past.zone, begin, hours)
        if self._latest is None or self._latest[0] != key:
            self._latest = (key, fit_model(past, begin, hours))
        return self._latest[1]


def _pad_to(hist: HourlyHistory, begin: pd.Timestamp) -> HourlyHistory:
    """History that ends before `begin` (a late provider) carried forward to it; later history cut."""
    gap = int((begin - hist.end) / HOUR)
    if gap < 0:
        return replace(hist, values=hist.values[:gap])
    if gap > 6:
        raise NoDataError(f"{hist.zone}: history ends at {hist.end}, {gap} h before {begin}")
    return replace(
        hist, values=np.append(hist.values, np.full(gap, hist.values[-1])), filled=hist.filled + gap
    )


def combine_forecasts(
    provider: IntensitySignal | None,
    ours: ModelForecast,
    begin: pd.Timestamp,
    hours: int,
    *,
    exact: bool = False,
) -> IntensitySignal:
    """The blend as a signal: hourly from `begin`, an 80% interval from the blend's error variance."""
    index = pd.date_range(begin, periods=hours, freq="h", tz="UTC")
    theirs = np.full(hours, np.nan)
    if provider is not None and not provider.values.dropna().empty:
        if provider.kind != ours.history.kind:
            raise InvalidInputError(
                f"provider forecast is {provider.kind.value} but the model was fitted on "
                f"{ours.history.kind.value} data"
            )
        theirs = provider.to_hourly().values.reindex(index).to_numpy(dtype="float64")
    level = float(np.mean(ours.history.values[-ERROR_WINDOW_H:]))
    prior = HorizonErrors.provider_prior(level, hours)
    weight = np.ones(hours) if exact else blend_weights(prior, ours.errors)
    if not exact:
        theirs = anchor_provider(theirs, ours.values)
    values = np.clip(blend(theirs, ours.values, weight), 0.0, None)
    known = np.isfinite(theirs)
    spread = np.sqrt(np.where(known, blended_mse(prior, ours.errors, weight), _model_mse(ours, hours)))
    if known.any():
        source = f"blend of {provider.source if provider else ''} and {ours.source}"
        note = (
            f"provider anchored on our model at its first hour (error fading x{PROVIDER_ERROR_PERSISTENCE:g}/h); "
            f"provider weight per hour ahead {np.round(weight[known][:6], 2).tolist()}...; provider errors: "
            f"{prior.how}; our model's: {ours.errors.how}; our model alone where the provider has no value"
        )
    else:
        source, note = ours.source, f"our model alone (no provider forecast); errors {ours.errors.how}"
    return make_signal(
        pd.Series(values, index=index),
        zone=ours.history.zone,
        kind=ours.history.kind,
        source=source,
        resolution=HOUR,
        lower=pd.Series(np.clip(values - Z80 * spread, 0.0, None), index=index, name="lower"),
        upper=pd.Series(values + Z80 * spread, index=index, name="upper"),
        issued_at=provider.issued_at if provider is not None and provider.issued_at is not None else begin,
        notes=(note,),
    )


def _model_mse(ours: ModelForecast, hours: int) -> np.ndarray:
    mse = ours.errors.mse[:hours]
    fallback = np.nanmax(np.where(np.isfinite(mse), mse, np.nan)) if np.isfinite(mse).any() else 0.0
    return np.asarray(np.where(np.isfinite(mse), mse, fallback))
