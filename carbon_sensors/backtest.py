"""The savings backtest: jobs drawn from real traces, five policies, emissions measured against the oracle.

Rules (issue 4): at hour h a policy sees only actual values before h. Jobs take d in {1, 3, 6} h with slack
s in {6, 12, 24} h and must finish by submission + d + s. A job's emissions are the mean actual intensity over
the hours it runs (constant power; every job counts once). `oracle_fraction` is (E_run_now - E_policy) /
(E_run_now - E_oracle) over a trace's jobs. Forecast matrices are computed once per trace (row = issue hour,
column = hours ahead), so every policy is a cheap lookup and a year of 400 jobs takes seconds.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from carbon_sensors.errors import InvalidInputError, NoDataError
from carbon_sensors.forecast.base import HourlyHistory, target_matrix
from carbon_sensors.forecast.combine import inverse_variance_blend
from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.forecast.naive import SeasonalNaive
from carbon_sensors.signal import IntensitySignal

POLICIES = ("run_now", "threshold", "plan_once", "ours", "oracle")
KINDS = ("contiguous", "interruptible")
DURATIONS_H = (1, 3, 6)
SLACKS_H = (6, 12, 24)
WARMUP_H = 28 * 24  # submissions start after the first 28 days
REFIT_H = 28 * 24  # our model is refitted every four weeks on everything before
HORIZON_H = 48
BUCKETS = ((1, 6), (7, 24), (25, 48))
THRESHOLD_PERCENTILE = 25.0
THRESHOLD_DAYS = 7
VINTAGES = 24  # provider forecasts issued in the last 24 hours are blended (their errors are independent)
AR_RHO = 0.9


@dataclass(frozen=True)
class BacktestConfig:
    """What a run varies: jobs per trace, seed, and the forecast the forecasting policies may use."""

    jobs: int = 400
    seed: int = 0
    forecast_mape: float | None = None
    trace_forecasts: bool = False

    def __post_init__(self) -> None:
        if self.jobs <= 0:
            raise InvalidInputError(f"jobs={self.jobs} must be a positive number of jobs per trace")
        if self.forecast_mape is not None and not 0 < self.forecast_mape < 1:
            raise InvalidInputError(
                f"forecast_mape={self.forecast_mape} must be a fraction in (0, 1), e.g. 0.10"
            )
        if self.forecast_mape is not None and self.trace_forecasts:
            raise InvalidInputError(
                "use either a synthetic provider forecast (forecast_mape) or the trace's own"
            )

    def describe(self) -> dict[str, Any]:
        if self.forecast_mape is not None:
            forecast = (
                f"synthetic provider forecast issued hourly: actual x (1 + e), e AR(1) over the horizon "
                f"(rho {AR_RHO}), spread growing with sqrt(horizon), MAE {self.forecast_mape:.0%} at 24 h, "
                "independent draws per issue, seeded, the same for every policy"
            )
        elif self.trace_forecasts:
            forecast = "the trace's own forecast column (NESO: the last published value, nearly the actual)"
        else:
            forecast = "history only (no provider forecast)"
        return {
            "jobs_per_trace": self.jobs,
            "seed": self.seed,
            "forecast_mape": self.forecast_mape,
            "uses_trace_forecast_column": self.trace_forecasts,
            "forecast": forecast,
            "durations_h": list(DURATIONS_H),
            "slacks_h": list(SLACKS_H),
            "warmup_days": WARMUP_H // 24,
            "deadline": "finish-by: submission + duration + slack",
            "emissions": "mean actual intensity over the hours a job runs (constant power, each job counts once)",
            "policies": {
                "run_now": "start at submission",
                "threshold": (
                    f"run when the latest value is at or below the {THRESHOLD_PERCENTILE:.0f}th percentile of "
                    f"the previous {THRESHOLD_DAYS} days, else at the latest start"
                ),
                "plan_once": (
                    "best window from one forecast at submission, never revisited: seasonal naive, or the "
                    "provider forecast when one is given"
                ),
                "ours": (
                    f"{CalendarLagForecaster.name} refitted every {REFIT_H // 24} days on all earlier data, "
                    "re-planned every hour; with a provider forecast: the provider's last "
                    f"{VINTAGES} hourly issues and our model blended by inverse error variance measured on "
                    "past errors"
                ),
                "oracle": "perfect knowledge of the actual values",
            },
        }


@dataclass(frozen=True)
class Jobs:
    """Submission hour (index into the hourly trace), duration and slack in hours, one entry per job."""

    submit: np.ndarray
    duration: np.ndarray
    slack: np.ndarray

    @classmethod
    def draw(cls, hours: int, count: int, rng: np.random.Generator) -> Jobs:
        duration = rng.choice(DURATIONS_H, count)
        slack = rng.choice(SLACKS_H, count)
        room = hours - duration - slack - WARMUP_H + 1  # submit + d + s <= hours
        if room.min() <= 0:
            raise NoDataError(
                f"a trace of {hours} hours is too short: jobs start after {WARMUP_H // 24} days and need up "
                f"to {max(DURATIONS_H) + max(SLACKS_H)} more hours"
            )
        submit = WARMUP_H + (rng.random(count) * room).astype(int)
        return cls(submit, duration, slack)


@dataclass(frozen=True)
class Forecasts:
    """Forecast matrices (issue hour x hours ahead) for one trace; NaN where no forecast was issued."""

    naive: np.ndarray
    model: np.ndarray
    plan_once: np.ndarray
    ours: np.ndarray
    provider: np.ndarray | None


# --- forecasts -------------------------------------------------------------------------------------------
def rolling_model(actual: HourlyHistory) -> np.ndarray:
    """Our model's forecasts at every hour after the warm-up, refitted every REFIT_H on all data before."""
    values = actual.values
    out = np.full((len(values), HORIZON_H), np.nan)
    model = CalendarLagForecaster(max_horizon=HORIZON_H)
    for fit_at in range(WARMUP_H, len(values), REFIT_H):
        model.fit_array(replace(actual, values=values[:fit_at]))
        issue = np.arange(fit_at, min(len(values), fit_at + REFIT_H))
        out[issue] = model.predict_array(values, issue, actual.start)
    return out


def synthetic_provider(values: np.ndarray, mape: float, rng: np.random.Generator) -> np.ndarray:
    """Actual x (1 + e): e AR(1) over the horizon, scaled so mean |e| is `mape` at 24 h (sqrt growth)."""
    shocks = rng.standard_normal((len(values), HORIZON_H))
    ar = np.empty_like(shocks)
    ar[:, 0] = shocks[:, 0]
    for k in range(1, HORIZON_H):
        ar[:, k] = AR_RHO * ar[:, k - 1] + np.sqrt(1 - AR_RHO**2) * shocks[:, k]
    spread = mape * np.sqrt(np.pi / 2) * np.sqrt(np.arange(1, HORIZON_H + 1) / 24)
    return np.asarray(target_matrix(values, np.arange(len(values)), HORIZON_H) * (1 + ar * spread))


def trace_column_forecast(forecast_column: np.ndarray) -> np.ndarray:
    """A trace's recorded forecast column read as if issued every hour (NESO: the last published value)."""
    return target_matrix(forecast_column, np.arange(len(forecast_column)), HORIZON_H)


def blended_provider(values: np.ndarray, provider: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Blend the provider's recent issues and our model, weights from errors on targets already observed."""
    out = np.full_like(provider, np.nan)
    truth = target_matrix(values, np.arange(len(values)), HORIZON_H)
    for block in range(WARMUP_H, len(values), REFIT_H):
        rows = np.arange(block, min(len(values), block + REFIT_H))
        seen = _issues_with_known_targets(block)
        forecasts = [_shifted(provider, lag)[rows] for lag in range(VINTAGES)]
        variances = [_shifted_variance(_mse(provider, truth, seen), lag) for lag in range(VINTAGES)]
        model_seen = seen[np.isfinite(model[seen, 0])]
        if len(model_seen) > 24 * 7:  # our model's errors are known once it has run for a week
            forecasts.append(model[rows])
            variances.append(_mse(model, truth, model_seen))
        out[rows] = inverse_variance_blend(forecasts, variances)
    return out


def _issues_with_known_targets(now: int) -> np.ndarray:
    """Issue hours whose whole horizon lies before `now` (their errors are observable at `now`)."""
    return np.arange(0, max(0, now - HORIZON_H))


def _mse(forecast: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> np.ndarray:
    err = forecast[rows] - truth[rows]
    mse = np.nanmean(err**2, axis=0) if len(rows) else np.full(HORIZON_H, np.inf)
    return np.where(np.isfinite(mse), mse, np.inf)


def _shifted(matrix: np.ndarray, lag: int) -> np.ndarray:
    """Row h holds the forecast issued at h - lag, realigned so column k is still hour h + k."""
    out = np.full_like(matrix, np.nan)
    if lag < len(matrix):
        out[lag:, : HORIZON_H - lag] = matrix[: len(matrix) - lag, lag:]
    return out


def _shifted_variance(variance: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(HORIZON_H, np.inf)
    out[: HORIZON_H - lag] = variance[lag:]
    return out


def build_forecasts(
    actual: HourlyHistory,
    config: BacktestConfig,
    rng: np.random.Generator,
    forecast_column: np.ndarray | None = None,
) -> Forecasts:
    values, zone = actual.values, actual.zone
    naive = SeasonalNaive(max_horizon=HORIZON_H).predict_array(values, np.arange(len(values)), actual.start)
    model = rolling_model(actual)
    provider: np.ndarray | None = None
    if config.forecast_mape is not None:
        provider = synthetic_provider(values, config.forecast_mape, rng)
    elif config.trace_forecasts:
        if forecast_column is None:
            raise InvalidInputError(f"{zone}: trace_forecasts was asked but the trace has no forecast column")
        provider = trace_column_forecast(forecast_column)
    if provider is None:
        return Forecasts(naive, model, naive, model, None)
    return Forecasts(naive, model, provider, blended_provider(values, provider, model), provider)


def forecast_errors(values: np.ndarray, forecasts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """MAE and MAPE by horizon bucket over every issue hour after the warm-up whose horizon is observed."""
    issue = np.arange(WARMUP_H, len(values) - HORIZON_H)
    truth = target_matrix(values, issue, HORIZON_H)
    report: dict[str, dict[str, Any]] = {}
    for name, matrix in forecasts.items():
        err = matrix[issue] - truth
        buckets = {}
        for lo, hi in BUCKETS:
            e, t = err[:, lo - 1 : hi], truth[:, lo - 1 : hi]
            ok = np.isfinite(e) & (t > 0)
            buckets[f"{lo}-{hi}h"] = {
                "mae": round(float(np.abs(e[ok]).mean()), 3),
                "mape": round(float((np.abs(e[ok]) / t[ok]).mean()), 4),
            }
        report[name] = buckets
    return report


# --- policies --------------------------------------------------------------------------------------------
def _window_means(values: np.ndarray, duration: int) -> np.ndarray:
    sums = np.concatenate([[0.0], np.cumsum(values)])
    return np.asarray((sums[duration:] - sums[:-duration]) / duration)


def _replanned_start(forecast: np.ndarray, submit: int, duration: int, slack: int) -> int:
    """Re-plan every hour with the forecast issued then; start as soon as starting now is the best plan."""
    latest = submit + slack
    for hour in range(submit, latest):
        means = _window_means(forecast[hour, : latest - hour + duration], duration)
        if int(np.argmin(means)) == 0:
            return hour
    return latest


def _replanned_hours(forecast: np.ndarray, submit: int, duration: int, slack: int) -> list[int]:
    """Interruptible: run this hour when it is among the cheapest hours still needed, or when forced."""
    end, left, hours = submit + duration + slack, duration, []
    for hour in range(submit, end):
        if left == 0:
            break
        row = forecast[hour, : end - hour]
        if end - hour <= left or int((row < row[0]).sum()) < left:
            hours.append(hour)
            left -= 1
    return hours


def _threshold_start(calm: np.ndarray, submit: int, slack: int) -> int:
    ok = np.flatnonzero(calm[submit : submit + slack + 1])
    return submit + int(ok[0]) if len(ok) else submit + slack


def _threshold_hours(calm: np.ndarray, submit: int, duration: int, slack: int) -> list[int]:
    end, left, hours = submit + duration + slack, duration, []
    for hour in range(submit, end):
        if left == 0:
            break
        if end - hour <= left or calm[hour]:
            hours.append(hour)
            left -= 1
    return hours


def calm_hours(values: np.ndarray) -> np.ndarray:
    """True at hour h when the value at h - 1 is at or below the percentile of the 7 days before h."""
    days = THRESHOLD_DAYS * 24
    calm = np.zeros(len(values), dtype=bool)
    if len(values) <= days:
        return calm
    windows = np.lib.stride_tricks.sliding_window_view(values, days)[: len(values) - days]
    limits = np.percentile(windows, THRESHOLD_PERCENTILE, axis=1)
    calm[days:] = values[days - 1 : -1] <= limits
    return calm


def simulate(values: np.ndarray, jobs: Jobs, forecasts: Forecasts) -> dict[str, dict[str, np.ndarray]]:
    """Each policy's emissions (mean actual intensity while running) per job, for both job kinds."""
    calm = calm_hours(values)
    out = {p: {k: np.empty(len(jobs.submit)) for k in KINDS} for p in POLICIES}
    for i, (a, d, s) in enumerate(
        zip(jobs.submit.tolist(), jobs.duration.tolist(), jobs.slack.tolist(), strict=True)
    ):
        span = values[a : a + d + s]
        starts = {
            "run_now": a,
            "threshold": _threshold_start(calm, a, s),
            "plan_once": a + int(np.argmin(_window_means(forecasts.plan_once[a, : d + s], d))),
            "ours": _replanned_start(forecasts.ours, a, d, s),
            "oracle": a + int(np.argmin(_window_means(span, d))),
        }
        for policy, start in starts.items():
            out[policy]["contiguous"][i] = values[start : start + d].mean()
        hours = {
            "run_now": np.arange(a, a + d),
            "threshold": np.array(_threshold_hours(calm, a, d, s)),
            "plan_once": a + np.argsort(forecasts.plan_once[a, : d + s], kind="stable")[:d],
            "ours": np.array(_replanned_hours(forecasts.ours, a, d, s)),
            "oracle": a + np.argsort(span, kind="stable")[:d],
        }
        for policy, run in hours.items():
            out[policy]["interruptible"][i] = values[run].mean()
    return out


def score(emissions: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per policy and kind: mean emissions, emissions relative to run_now, savings % and oracle fraction."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for policy in POLICIES:
        table[policy] = {}
        for kind in KINDS:
            total = float(emissions[policy][kind].sum())
            run_now = float(emissions["run_now"][kind].sum())
            oracle = float(emissions["oracle"][kind].sum())
            room = run_now - oracle
            table[policy][kind] = {
                "mean_intensity": round(total / len(emissions[policy][kind]), 3),
                "relative_to_run_now": round(total / run_now, 5),
                "savings_pct": round(100 * (1 - total / run_now), 3),
                "oracle_fraction": round((run_now - total) / room, 4) if room > 0 else float("nan"),
            }
    return table


# --- the run ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """One backtest input: the actual signal, and optionally its recorded forecast column."""

    name: str
    actual: IntensitySignal
    forecast: IntensitySignal | None = None


def hourly(
    signal: IntensitySignal, start: pd.Timestamp | None = None, hours: int | None = None
) -> HourlyHistory:
    """The signal averaged to hourly, gaps interpolated (the count is reported), optionally on a given grid."""
    hist = HourlyHistory.from_signal(signal, min_hours=1)
    if start is None or hours is None:
        return hist
    grid = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    series = pd.Series(
        hist.values, index=pd.date_range(hist.start, periods=len(hist.values), freq="h", tz="UTC")
    )
    aligned = series.reindex(grid).interpolate(limit_direction="both").to_numpy(dtype="float64")
    return HourlyHistory(start, aligned, hist.zone, hist.kind, hist.source, hist.filled)


def backtest_trace(trace: Trace, config: BacktestConfig) -> dict[str, Any]:
    """Draw the jobs, build the forecasts, simulate every policy, and score one trace."""
    began = time.perf_counter()
    actual = hourly(trace.actual)
    column = None
    if config.trace_forecasts:
        if trace.forecast is None:
            raise InvalidInputError(
                f"{trace.name}: --use-trace-forecast needs a trace with a forecast column"
            )
        column = hourly(trace.forecast, actual.start, len(actual.values)).values
    key = zlib.crc32(trace.name.encode())
    jobs = Jobs.draw(len(actual.values), config.jobs, np.random.default_rng([config.seed, key]))
    forecasts = build_forecasts(actual, config, np.random.default_rng([config.seed, key, 1]), column)
    matrices = {"seasonal_naive": forecasts.naive, "model": forecasts.model}
    if forecasts.provider is not None:
        matrices |= {"provider": forecasts.provider, "ours_blend": forecasts.ours}
    return {
        "zone": actual.zone,
        "source": actual.source,
        "kind": actual.kind.value,
        "hours": len(actual.values),
        "hours_interpolated": actual.filled,
        "policies": score(simulate(actual.values, jobs, forecasts)),
        "forecast_error": forecast_errors(actual.values, matrices),
        "wall_time_s": round(time.perf_counter() - began, 3),
    }


def run_backtest(
    traces: list[Trace],
    config: BacktestConfig,
    *,
    progress: bool = False,
    on_trace: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole report: config, each trace, and the mean over traces (of each trace's figures)."""
    if not traces:
        raise InvalidInputError("backtest needs at least one trace (--zone or --trace)")
    names = [t.name for t in traces]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"trace names must be unique, got {names}")
    began = time.perf_counter()
    results: dict[str, Any] = {}
    for trace in tqdm(traces, desc="backtest", unit="trace", disable=not progress, leave=False):
        if on_trace is not None:
            on_trace(trace.name)
        results[trace.name] = backtest_trace(trace, config)
    return {
        "config": config.describe(),
        "traces": results,
        "mean": _mean_policies(results),
        "mean_forecast_error": _mean_errors(results),
        "wall_time_s": round(time.perf_counter() - began, 2),
    }


def _mean_policies(results: dict[str, Any]) -> dict[str, Any]:
    mean: dict[str, Any] = {}
    for policy in POLICIES:
        mean[policy] = {}
        for kind in KINDS:
            rows = [r["policies"][policy][kind] for r in results.values()]
            mean[policy][kind] = {
                field: round(float(np.nanmean([row[field] for row in rows])), 4)
                for field in ("oracle_fraction", "savings_pct", "relative_to_run_now")
            }
    return mean


def _mean_errors(results: dict[str, Any]) -> dict[str, Any]:
    names = next(iter(results.values()))["forecast_error"].keys()
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {}
        for lo, hi in BUCKETS:
            bucket = f"{lo}-{hi}h"
            rows = [r["forecast_error"][name][bucket] for r in results.values()]
            out[name][bucket] = {
                m: round(float(np.mean([row[m] for row in rows])), 4) for m in ("mae", "mape")
            }
    return out
