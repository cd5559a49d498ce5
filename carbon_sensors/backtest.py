"""The savings backtest: jobs on real traces, each policy's emissions measured against the oracle.

Rules: at hour h a policy sees only actual values before h, and only provider issues issued by h. Jobs take
d in {1, 3, 6} h with slack s in {6, 12, 24} h and must finish by submission + d + s. A job's emissions are
the mean actual intensity over the hours it runs (constant power; every job counts once). `oracle_fraction`
is (E_run_now - E_policy) / (E_run_now - E_oracle) over a trace's jobs.

One implementation of each policy: the forecasts are the product's own (`forecast.combine.blend` with
`blend_weights`, exactly as `assemble_forecast` builds them for the live paths), and the planning rule is the
planner's on hourly slots (`plan_window`: lowest mean window; `plan_slots` with 1 h chunks: cheapest hours),
checked equal by tests. The shipped policy (`ours`) follows the operators: whole jobs the window operators'
rule (wait for the planned window, re-plan there), interruptible jobs the training strategy's hourly re-plan.
Forecast matrices are computed once per trace (row = issue hour, column = hours
ahead), so every policy is a cheap lookup and a year of 400 jobs takes seconds.
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
from carbon_sensors.forecast.base import HOUR, HourlyHistory, target_matrix
from carbon_sensors.forecast.combine import (
    ERROR_WINDOW_H,
    MODEL_HISTORY_DAYS,
    PROVIDER_ERROR_PERSISTENCE,
    HorizonErrors,
    anchor_provider,
    blend,
    blend_weights,
    recent_errors,
)
from carbon_sensors.forecast.issues import issue_ages, newest_issue_matrix
from carbon_sensors.forecast.model import CalendarLagForecaster
from carbon_sensors.forecast.naive import SeasonalNaive
from carbon_sensors.forecast.noise import NOISE_CALIBRATION, correlated_provider, measure_issue_errors
from carbon_sensors.signal import IntensitySignal
from carbon_sensors.worth import DEFAULT_MAX_REPLANS, DEFAULT_MIN_SAVINGS

KINDS = ("contiguous", "interruptible")
DURATIONS_H = (1, 3, 6)
SLACKS_H = (6, 12, 24)
WARMUP_H = 28 * 24  # submissions start after the first 28 days
REFIT_H = 28 * 24  # our model is refitted every four weeks (live: every hour) on the TRAIN_H before
TRAIN_H: int | None = MODEL_HISTORY_DAYS * 24  # hours of history each refit sees, as on the live paths
HORIZON_H = 48
BUCKETS = ((1, 6), (7, 24), (25, 48))
THRESHOLD_PERCENTILE = 25.0
THRESHOLD_DAYS = 7
SHIPPED = "ours"

# policy -> (forecast it plans on, how often it plans); None: a rule that needs no forecast
HISTORY_POLICIES: dict[str, tuple[str | None, str]] = {
    "run_now": (None, "run_now"),
    "threshold": (None, "threshold"),
    "plan_once": ("seasonal_naive", "once"),
    "plan_once_model": ("model", "once"),
    "ours": ("model", "shipped"),
    "replan_hourly": ("model", "replan"),
    "oracle": (None, "oracle"),
}
PROVIDER_POLICIES: dict[str, tuple[str | None, str]] = {
    "run_now": (None, "run_now"),
    "threshold": (None, "threshold"),
    "plan_once": ("provider", "once"),
    "replan_provider": ("provider", "replan"),
    "plan_once_model": ("model", "once"),
    "plan_once_naive": ("seasonal_naive", "once"),
    "plan_once_blend": ("blend", "once"),
    "ours": ("blend", "shipped"),
    "replan_blend_hourly": ("blend", "replan"),
    "replan_blend_measured": ("blend_measured", "replan"),
    "oracle": (None, "oracle"),
}
PLANNER_RULE = (
    "carbon_sensors.planner rule on hourly slots: plan_window (lowest mean window) for contiguous jobs, "
    "plan_slots with 1 h chunks (cheapest hours) for interruptible ones"
)
FORECAST_CODE = {
    "seasonal_naive": "carbon_sensors.forecast.naive.SeasonalNaive",
    "model": f"carbon_sensors.forecast.model.CalendarLagForecaster, refitted every {REFIT_H // 24} days",
    "provider": "the provider's newest issue, our model beyond its reach (forecast.combine.blend with weight 1)",
    "blend": (
        "carbon_sensors.forecast.combine.anchor_provider + blend + blend_weights, as assemble_forecast (the "
        "live paths): the provider shifted by its gap to our model on its first hour (fading "
        f"x{PROVIDER_ERROR_PERSISTENCE:g} per hour ahead), provider errors from the NESO prior scaled to the "
        f"last week's level, our model's measured on the last {ERROR_WINDOW_H // 24} days"
    ),
    "blend_measured": (
        "as blend, but the provider's errors measured on its own past issues (what a local archive of "
        "fetched issues would give); not shipped"
    ),
}
MODE_TEXT = {
    "once": "planned once at submission, never revisited",
    "shipped": "whole jobs: the window operators' rule (CarbonWindowOperator, the Prefect wait): planned at "
    f"submission, run now when that plan saves less than min_savings ({DEFAULT_MIN_SAVINGS:g}%), else woken at "
    f"the window and re-planned there, held again only for a later window that saves min_savings against "
    f"starting then (at most {DEFAULT_MAX_REPLANS} times, max_replans' default on both faces); "
    "interruptible jobs: the training strategy's rule, as 'replan'",
    "replan": "re-planned every hour with the forecast issued then (ForecastWindowStrategy's rule): run now "
    f"when the first plan saves less than min_savings ({DEFAULT_MIN_SAVINGS:g}%) against running now; else "
    "start when starting now is the best plan / run this hour when it is among the cheapest still needed",
}


@dataclass(frozen=True)
class BacktestConfig:
    """What a run varies: jobs per trace, seed, and the provider forecast the policies may use."""

    jobs: int = 400
    seed: int = 0
    forecast_mape: float | None = None
    trace_forecasts: bool = False
    forecast_issues: str | None = None

    def __post_init__(self) -> None:
        if self.jobs <= 0:
            raise InvalidInputError(f"jobs={self.jobs} must be a positive number of jobs per trace")
        if self.forecast_mape is not None and not 0 < self.forecast_mape < 1:
            raise InvalidInputError(
                f"forecast_mape={self.forecast_mape} must be a fraction in (0, 1), e.g. 0.10"
            )
        chosen = [self.forecast_mape is not None, self.trace_forecasts, self.forecast_issues is not None]
        if sum(chosen) > 1:
            raise InvalidInputError(
                "use one provider forecast: recorded issues (forecast_issues), a synthetic one "
                "(forecast_mape) or the trace's own column (trace_forecasts)"
            )

    @property
    def has_provider(self) -> bool:
        return self.forecast_mape is not None or self.trace_forecasts or self.forecast_issues is not None

    @property
    def policies(self) -> dict[str, tuple[str | None, str]]:
        return PROVIDER_POLICIES if self.has_provider else HISTORY_POLICIES

    def describe(self) -> dict[str, Any]:
        noise: dict[str, Any] | None = None
        if self.forecast_issues is not None:
            forecast = (
                f"real recorded provider issues from {self.forecast_issues} (each from its issued_at on)"
            )
        elif self.forecast_mape is not None:
            forecast = (
                f"synthetic provider forecast issued hourly, MAPE {self.forecast_mape:.0%} at 24 h, errors "
                "shared across issues (see noise_model)"
            )
            noise = {"name": "correlated-across-issues", **NOISE_CALIBRATION}
        elif self.trace_forecasts:
            forecast = "the trace's own forecast column (NESO: the last published value, nearly the actual)"
        else:
            forecast = "history only (no provider forecast)"
        policies: dict[str, str] = {
            "run_now": "start at submission",
            "threshold": (
                f"run when the latest value is at or below the {THRESHOLD_PERCENTILE:.0f}th percentile of "
                f"the previous {THRESHOLD_DAYS} days, else at the latest start"
            ),
            "oracle": "perfect knowledge of the actual values",
        }
        for name, (source, mode) in self.policies.items():
            if source is not None:
                policies[name] = f"{FORECAST_CODE[source]}; {MODE_TEXT[mode]}"
        return {
            "jobs_per_trace": self.jobs,
            "seed": self.seed,
            "forecast_mape": self.forecast_mape,
            "forecast_issues": self.forecast_issues,
            "uses_trace_forecast_column": self.trace_forecasts,
            "forecast": forecast,
            "real_or_synthetic": "synthetic" if noise else "real",
            "noise_model": noise,
            "shipped_policy": SHIPPED,
            "planner": PLANNER_RULE,
            "durations_h": list(DURATIONS_H),
            "slacks_h": list(SLACKS_H),
            "warmup_days": WARMUP_H // 24,
            "deadline": "finish-by: submission + duration + slack",
            "emissions": "mean actual intensity over the hours a job runs (constant power, each job counts once)",
            "policies": policies,
        }


@dataclass(frozen=True)
class Jobs:
    """Submission hour (index into the hourly trace), duration and slack in hours, one entry per job."""

    submit: np.ndarray
    duration: np.ndarray
    slack: np.ndarray

    @classmethod
    def draw(
        cls, hours: int, count: int, rng: np.random.Generator, first: int = WARMUP_H, last: int | None = None
    ) -> Jobs:
        """Jobs submitted in [first, last) (default: to the end), each finishing inside the trace."""
        duration = rng.choice(DURATIONS_H, count)
        slack = rng.choice(SLACKS_H, count)
        stop = (
            hours - duration - slack + 1 if last is None else np.minimum(last, hours - duration - slack + 1)
        )
        room = stop - first
        if room.min() <= 0:
            raise NoDataError(
                f"a trace of {hours} hours is too short: jobs start after {first} hours and need up "
                f"to {max(DURATIONS_H) + max(SLACKS_H)} more hours"
            )
        submit = first + (rng.random(count) * room).astype(int)
        return cls(submit, duration, slack)


# --- forecasts -------------------------------------------------------------------------------------------
def rolling_model(actual: HourlyHistory, until: int | None = None) -> np.ndarray:
    """Our model's forecasts at every hour after the warm-up (to `until`), refitted every REFIT_H on the
    TRAIN_H hours before (the live paths' history)."""
    values = actual.values
    out = np.full((len(values), HORIZON_H), np.nan)
    model = CalendarLagForecaster(max_horizon=HORIZON_H)
    for fit_at in range(WARMUP_H, len(values) if until is None else until, REFIT_H):
        first = 0 if TRAIN_H is None else max(0, fit_at - TRAIN_H)
        model.fit_array(replace(actual, start=actual.start + first * HOUR, values=values[first:fit_at]))
        issue = np.arange(fit_at, min(len(values), fit_at + REFIT_H))
        out[issue] = model.predict_array(values, issue, actual.start)
    return out


def trace_column_forecast(forecast_column: np.ndarray) -> np.ndarray:
    """A trace's recorded forecast column read as if issued every hour (NESO: the last published value)."""
    return target_matrix(forecast_column, np.arange(len(forecast_column)), HORIZON_H)


def blended(
    values: np.ndarray, provider: np.ndarray, model: np.ndarray, rows: np.ndarray, *, measured: bool
) -> np.ndarray:
    """The product's blend at each row in `rows`, weights from what was known at that hour.

    Our model's errors are measured on the last week before the row (as `fit_model` does live); the
    provider's come from the prior (as live), or with `measured` from its own past issues.
    """
    out = np.full_like(provider, np.nan)
    for row in rows.tolist():
        model_errors = recent_errors(model, values, row, ERROR_WINDOW_H)
        if measured:
            provider_errors = recent_errors(provider, values, row, ERROR_WINDOW_H)
        else:
            level = float(np.mean(values[max(0, row - ERROR_WINDOW_H) : row]))
            provider_errors = HorizonErrors.provider_prior(level, HORIZON_H)
        weight = blend_weights(provider_errors, model_errors)
        out[row] = blend(anchor_provider(provider[row], model[row]), model[row], weight)
    return out


def provider_or_model(provider: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The provider's forecast, our model's where the provider has no value (its horizon ends)."""
    return blend(provider, model, np.ones(provider.shape[1]))


def build_forecasts(
    actual: HourlyHistory,
    config: BacktestConfig,
    rng: np.random.Generator,
    *,
    forecast_column: np.ndarray | None = None,
    issues: pd.DataFrame | None = None,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every forecast matrix a policy may plan on; the blends only at `rows` (default: after the warm-up)."""
    values, zone = actual.values, actual.zone
    naive = SeasonalNaive(max_horizon=HORIZON_H).predict_array(values, np.arange(len(values)), actual.start)
    model = rolling_model(actual, None if rows is None else int(rows.max()) + 1)
    out = {"seasonal_naive": naive, "model": model}
    provider: np.ndarray | None = None
    if issues is not None:
        provider = newest_issue_matrix(issues, actual.start, len(values), HORIZON_H)[0]
    elif config.forecast_mape is not None:
        provider = correlated_provider(values, config.forecast_mape, HORIZON_H, rng)
    elif config.trace_forecasts:
        if forecast_column is None:
            raise InvalidInputError(f"{zone}: trace_forecasts was asked but the trace has no forecast column")
        provider = trace_column_forecast(forecast_column)
    if provider is None:
        return out
    when = np.arange(WARMUP_H, len(values)) if rows is None else rows
    out["provider"] = provider_or_model(provider, model)
    out["blend"] = blended(values, provider, model, when, measured=False)
    out["blend_measured"] = blended(values, provider, model, when, measured=True)
    return out


def forecast_errors(
    values: np.ndarray, forecasts: dict[str, np.ndarray], rows: np.ndarray
) -> dict[str, dict[str, Any]]:
    """MAE and MAPE by horizon bucket over the issue hours in `rows` whose horizon is observed."""
    issue = rows[rows < len(values) - HORIZON_H]
    truth = target_matrix(values, issue, HORIZON_H)
    report: dict[str, dict[str, Any]] = {}
    for name, matrix in forecasts.items():
        err = matrix[issue] - truth
        buckets = {}
        for lo, hi in BUCKETS:
            e, t = err[:, lo - 1 : hi], truth[:, lo - 1 : hi]
            ok = np.isfinite(e) & (t > 0)
            buckets[f"{lo}-{hi}h"] = {
                "mae": round(float(np.abs(e[ok]).mean()), 3) if ok.any() else None,
                "mape": round(float((np.abs(e[ok]) / t[ok]).mean()), 4) if ok.any() else None,
            }
        report[name] = buckets
    return report


# --- policies --------------------------------------------------------------------------------------------
def window_means(values: np.ndarray, duration: int) -> np.ndarray:
    """Mean of every window of `duration` hours (the planner's contiguous objective on hourly slots)."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    return np.asarray((sums[duration:] - sums[:-duration]) / duration)


def best_start(row: np.ndarray, duration: int, slack: int) -> int:
    """Offset of the lowest-mean window (ties: the earliest), as `plan_window` picks on hourly data."""
    return int(np.argmin(window_means(row[: duration + slack], duration)))


def cheapest_hours(row: np.ndarray, duration: int, slack: int) -> np.ndarray:
    """Offsets of the `duration` cheapest hours (ties: the earliest), as `plan_slots` with 1 h chunks."""
    return np.sort(np.argsort(row[: duration + slack], kind="stable")[:duration])


def _replanned_start(forecast: np.ndarray, submit: int, duration: int, slack: int) -> int:
    """Re-plan every hour with the forecast issued then; start as soon as starting now is the best plan."""
    latest = submit + slack
    for hour in range(submit, latest):
        if best_start(forecast[hour], duration, latest - hour) == 0:
            return hour
    return latest


def _woken_start(forecast: np.ndarray, submit: int, duration: int, slack: int) -> int:
    """The window operators' rule: wait for the planned window, re-plan there, hold again only for a later
    window worth it (CarbonWindowOperator.execute_complete; the Prefect wait on its rescheduled run)."""
    latest = submit + slack
    start = submit + best_start(forecast[submit], duration, slack)
    for _ in range(DEFAULT_MAX_REPLANS):
        fresh = forecast[start, : duration + latest - start]
        later = best_start(fresh, duration, latest - start)
        if later == 0 or _not_worth_holding(fresh, window_means(fresh, duration)[later], duration):
            break
        start += later
    return start


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


def _choice(
    mode: str, forecast: np.ndarray | None, values: np.ndarray, calm: np.ndarray, a: int, d: int, s: int
) -> tuple[int, np.ndarray]:
    """(contiguous start, interruptible hours) one policy picks for one job."""
    if mode == "run_now":
        return a, np.arange(a, a + d)
    if mode == "threshold":
        return _threshold_start(calm, a, s), np.array(_threshold_hours(calm, a, d, s))
    if mode == "oracle":
        span = values[a : a + d + s]
        return a + best_start(span, d, s), a + cheapest_hours(span, d, s)
    assert forecast is not None
    if mode == "once":
        return a + best_start(forecast[a], d, s), a + cheapest_hours(forecast[a], d, s)
    row, run_now = forecast[a, : d + s], np.arange(a, a + d)
    hold = _woken_start if mode == "shipped" else _replanned_start
    start = a if _not_worth_holding(row, window_means(row, d).min(), d) else hold(forecast, a, d, s)
    cheapest = row[cheapest_hours(row, d, s)].mean()
    hours = run_now if _not_worth_holding(row, cheapest, d) else np.array(_replanned_hours(forecast, a, d, s))
    return start, hours


def _not_worth_holding(row: np.ndarray, expected: float, duration: int) -> bool:
    """ForecastWindowStrategy's first decision (`worth.not_worth_holding`): a plan that saves less than
    DEFAULT_MIN_SAVINGS percent against running now runs now; once a job was held, its plan is followed."""
    now = float(row[:duration].mean())
    return now > 0 and 100.0 * (now - expected) / now < DEFAULT_MIN_SAVINGS


def simulate(
    values: np.ndarray,
    jobs: Jobs,
    forecasts: dict[str, np.ndarray],
    policies: dict[str, tuple[str | None, str]],
) -> dict[str, dict[str, np.ndarray]]:
    """Each policy's emissions (mean actual intensity while running) per job, for both job kinds."""
    calm = calm_hours(values)
    out = {p: {k: np.empty(len(jobs.submit)) for k in KINDS} for p in policies}
    for i, (a, d, s) in enumerate(
        zip(jobs.submit.tolist(), jobs.duration.tolist(), jobs.slack.tolist(), strict=True)
    ):
        for policy, (source, mode) in policies.items():
            start, hours = _choice(mode, None if source is None else forecasts[source], values, calm, a, d, s)
            out[policy]["contiguous"][i] = values[start : start + d].mean()
            out[policy]["interruptible"][i] = values[hours].mean()
    return out


def score(emissions: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per policy and kind: mean emissions, emissions relative to run_now, savings % and oracle fraction."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for policy in emissions:
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
    """One backtest input: the actual signal, optionally its recorded forecast column or provider issues."""

    name: str
    actual: IntensitySignal
    forecast: IntensitySignal | None = None
    issues: pd.DataFrame | None = None


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


def _issue_span(issues: pd.DataFrame, actual: HourlyHistory) -> tuple[int, int]:
    """Trace hours from the first hour the first issue is usable to the hour after the last issue."""
    issued = pd.DatetimeIndex(issues["issued_at"])
    first = int(np.ceil((issued.min() - actual.start) / pd.Timedelta(hours=1)))
    last = int(np.ceil((issued.max() - actual.start) / pd.Timedelta(hours=1))) + 1
    if first < WARMUP_H or last > len(actual.values):
        raise NoDataError(
            f"{actual.zone}: forecast issues run {issued.min()}..{issued.max()} but the actuals need "
            f"{WARMUP_H // 24} days before the first issue and must cover the last "
            f"({actual.start}..{actual.end})"
        )
    return first, last


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
    if config.forecast_issues is not None and trace.issues is None:
        raise InvalidInputError(f"{trace.name}: forecast_issues is set but the trace carries no issues")
    first, last = WARMUP_H, None
    if trace.issues is not None:
        first, last = _issue_span(trace.issues, actual)
    key = zlib.crc32(trace.name.encode())
    jobs = Jobs.draw(len(actual.values), config.jobs, np.random.default_rng([config.seed, key]), first, last)
    rows = np.arange(first, int((jobs.submit + jobs.slack).max()) + 1)
    forecasts = build_forecasts(
        actual,
        config,
        np.random.default_rng([config.seed, key, 1]),
        forecast_column=column,
        issues=trace.issues,
        rows=rows,
    )
    extra: dict[str, Any] = {}
    if trace.issues is not None:
        truth = pd.Series(
            actual.values, index=pd.date_range(actual.start, periods=len(actual.values), freq="h")
        )
        extra["provider_issue_errors"] = measure_issue_errors(trace.issues, truth)
        extra["provider_issue_age_h"] = _age_summary(issue_ages(trace.issues, actual.start, len(truth))[rows])
    return {
        "zone": actual.zone,
        "source": actual.source,
        "kind": actual.kind.value,
        "hours": len(actual.values),
        "hours_interpolated": actual.filled,
        **extra,
        "submissions": [
            str(actual.start + first * pd.Timedelta(hours=1)),
            str(actual.start + int(jobs.submit.max()) * pd.Timedelta(hours=1)),
        ],
        "policies": score(simulate(actual.values, jobs, forecasts, config.policies)),
        "forecast_error": forecast_errors(actual.values, forecasts, rows),
        "wall_time_s": round(time.perf_counter() - began, 3),
    }


def _age_summary(ages: np.ndarray) -> dict[str, float]:
    """How old the newest provider issue is over the hours the jobs plan in (live: minutes old)."""
    return {
        "median": round(float(np.median(ages)), 2),
        "p90": round(float(np.percentile(ages, 90)), 2),
        "share_within_3h": round(float(np.mean(ages <= 3)), 3),
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
        "mean": _mean_policies(results, list(config.policies)),
        "mean_forecast_error": _mean_errors(results),
        "wall_time_s": round(time.perf_counter() - began, 2),
    }


def _mean_policies(results: dict[str, Any], policies: list[str]) -> dict[str, Any]:
    mean: dict[str, Any] = {}
    for policy in policies:
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
            out[name][bucket] = {}
            for m in ("mae", "mape"):
                got = [r["forecast_error"][name][bucket][m] for r in results.values()]
                got = [g for g in got if g is not None]
                out[name][bucket][m] = round(float(np.mean(got)), 4) if got else None
    return out
