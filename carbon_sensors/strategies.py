"""Strategies for a job that may be held: threshold with hysteresis, adaptive percentile, forecast window.

Each answers `decide(now, remaining_work=..., deadline=...)` with a `Decision`. `now` comes from the caller
(under replay: the trace time), and each strategy reads the source's recent values with
`source.history(zone, now - lookback, now)`: the last period that started before `now` is "the current value".
Deadlines first: when `now + remaining_work` reaches the deadline the answer is RUN, and a hold never lasts
past the latest start (deadline - remaining_work). A source error gives an explicit fallback decision
(RUN by default: fail open, visibly; `on_error="pause"` holds for one re-check, still bounded by the deadline and,
for the threshold strategy, by `max_pause`). The deadline guard in `carbon_sensors.deadline` stands above all
of them, and above any user-written strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from carbon_sensors.decision import Decision, Strategy
from carbon_sensors.errors import CarbonAwareError, InvalidInputError, NoDataError
from carbon_sensors.forecast.combine import MODEL_HISTORY_DAYS, ModelPerHour, assemble_forecast
from carbon_sensors.options import (
    Option,
    Schema,
    boolean,
    choice,
    day_span,
    duration,
    number,
    option_mapping,
    parse_options,
)
from carbon_sensors.planner import plan_slots
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.signal import IntensitySignal
from carbon_sensors.timeutil import require_utc
from carbon_sensors.worth import DEFAULT_MIN_SAVINGS, check_min_savings, not_worth_holding

log = logging.getLogger(__name__)

OnError = Literal["run", "pause"]
# The one outage option every operator and flow takes, mapped here to the strategies' `on_error`:
# "open" trains without carbon data, "closed" pauses (bounded by max_pause and the deadline).
OnOutage = Literal["open", "closed"]
ON_ERROR_FOR_OUTAGE: dict[str, OnError] = {"open": "run", "closed": "pause"}
SOURCE_ERRORS = (CarbonAwareError, OSError, TimeoutError)


def with_outage_policy(options: Mapping[str, Any] | None, on_outage: str | None) -> dict[str, Any]:
    """Strategy `options` with `on_outage` ('open' | 'closed') mapped to `on_error`; None leaves them as given."""
    given = option_mapping(options, "strategy options")
    if on_outage is None:
        return given
    if on_outage not in ON_ERROR_FOR_OUTAGE:
        raise InvalidInputError(
            f"on_outage={on_outage!r} is not valid; use one of {list(ON_ERROR_FOR_OUTAGE)}"
        )
    if "on_error" in given:
        raise InvalidInputError(
            f"give on_outage={on_outage!r} or the strategy option on_error={given['on_error']!r}, not both"
        )
    return {**given, "on_error": ON_ERROR_FOR_OUTAGE[on_outage]}


class _Base:
    """Deadline bookkeeping and error fallback shared by every strategy.

    `max_pause` (None: unbounded) bounds every hold, outages included: `paused_since` is when the current hold
    began; once a hold reached `max_pause` the job runs until the grid (or the data) is clean again.
    """

    max_pause: pd.Timedelta | None = None
    paused_since: pd.Timestamp | None = None
    released = False  # max_pause ended the current hold: run until the grid or the data is clean again

    def __init__(self, source: IntensitySource, zone: str, *, recheck: timedelta, on_error: OnError) -> None:
        if pd.Timedelta(recheck) <= pd.Timedelta(0):
            raise InvalidInputError(f"recheck={recheck} must be longer than zero")
        if on_error not in ("run", "pause"):
            raise InvalidInputError(f"on_error={on_error!r} must be 'run' or 'pause'")
        self.source = source
        self.zone = zone
        self.recheck = pd.Timedelta(recheck)
        self.on_error: OnError = on_error

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        moment = require_utc(now, "now")
        work = pd.Timedelta(remaining_work)
        if work < pd.Timedelta(0):
            raise InvalidInputError(f"remaining_work={remaining_work} must not be negative")
        latest = None if deadline is None else require_utc(deadline, "deadline") - work
        if latest is not None and moment >= latest:
            return Decision.run(
                f"deadline: {work} of work left and the deadline is {latest + work:%Y-%m-%dT%H:%MZ}; running regardless"
            )
        try:
            return self._decide(moment, work, latest)
        except SOURCE_ERRORS as exc:
            log.warning(
                "%s: %s failed (%s); falling back to %s", type(self).__name__, self.zone, exc, self.on_error
            )
            reason = f"fallback: carbon data unavailable ({exc})"
            if self.on_error == "run":
                return Decision.run(reason + "; running now (fail open)", fallback=True)
            return self._hold(moment, latest, reason + "; holding until the next check", fallback=True)

    def _decide(self, now: pd.Timestamp, work: pd.Timedelta, latest: pd.Timestamp | None) -> Decision:
        raise NotImplementedError

    def _hold(self, now: pd.Timestamp, latest: pd.Timestamp | None, reason: str, **facts: Any) -> Decision:
        """Pause until the next check, never past the latest start nor past `max_pause` since the hold began."""
        if self.max_pause is None:
            return Decision.pause_until(self._hold_until(now, latest), reason, **facts)
        if self.released:
            return Decision.run(
                f"{reason}; but the max pause of {self.max_pause} was reached: running", **facts
            )
        self.paused_since = self.paused_since or now
        if now - self.paused_since >= self.max_pause:
            self.paused_since, self.released = None, True
            return Decision.run(f"{reason}; max pause of {self.max_pause} reached: running", **facts)
        return Decision.pause_until(
            self._hold_until(now, latest, self.paused_since + self.max_pause), reason, **facts
        )

    def _hold_until(
        self, now: pd.Timestamp, latest: pd.Timestamp | None, *limits: pd.Timestamp
    ) -> pd.Timestamp:
        candidates = [now + self.recheck, *limits]
        if latest is not None:
            candidates.append(latest)
        return min(candidates)

    def _recent(self, now: pd.Timestamp, lookback: pd.Timedelta) -> IntensitySignal:
        return self.source.history(self.zone, now - lookback, now)

    @staticmethod
    def _current(recent: IntensitySignal, now: pd.Timestamp, max_age: pd.Timedelta) -> tuple[float, str]:
        known = recent.values.dropna()
        if known.empty:
            raise NoDataError(f"{recent.zone}: no recent value before {now.isoformat()}")
        age = now - known.index[-1]
        if age > max_age:
            raise NoDataError(f"{recent.zone}: the latest value is {age} old (more than {max_age})")
        return float(known.iloc[-1]), recent.source


class ThresholdStrategy(_Base):
    """Pause above `pause_above`, resume below `resume_below` (hysteresis), never pause longer than `max_pause`.

    Between the two thresholds the previous state holds; this object remembers when the current pause began.
    """

    def __init__(
        self,
        source: IntensitySource,
        zone: str,
        *,
        pause_above: float,
        resume_below: float,
        max_pause: timedelta,
        recheck: timedelta = timedelta(minutes=15),
        max_age: timedelta = timedelta(hours=2),
        on_error: OnError = "run",
    ) -> None:
        super().__init__(source, zone, recheck=recheck, on_error=on_error)
        if resume_below > pause_above:
            raise InvalidInputError(f"resume_below={resume_below} must not exceed pause_above={pause_above}")
        if pd.Timedelta(max_pause) <= pd.Timedelta(0):
            raise InvalidInputError(f"max_pause={max_pause} must be longer than zero")
        self.pause_above = pause_above
        self.resume_below = resume_below
        self.max_pause = pd.Timedelta(max_pause)
        self.max_age = pd.Timedelta(max_age)

    def _decide(self, now: pd.Timestamp, work: pd.Timedelta, latest: pd.Timestamp | None) -> Decision:
        value, source = self._current(self._recent(now, self.max_age), now, self.max_age)
        facts: dict[str, Any] = {"intensity": value, "source": source}
        held = self.paused_since is not None or self.released
        dirty = value > self.pause_above or (held and value >= self.resume_below)
        if not dirty:
            self.paused_since, self.released = None, False
            return Decision.run(
                f"intensity {value:.0f} is below the pause threshold {self.pause_above:.0f}", **facts
            )
        reason = f"intensity {value:.0f} above {self.pause_above:.0f} (resume below {self.resume_below:.0f})"
        return self._hold(now, latest, reason, **facts)


class AdaptiveStrategy(_Base):
    """Pause while the current value is above the `percentile`-th percentile of the last `days` days."""

    def __init__(
        self,
        source: IntensitySource,
        zone: str,
        *,
        percentile: float,
        days: float,
        recheck: timedelta = timedelta(minutes=30),
        max_age: timedelta = timedelta(hours=2),
        on_error: OnError = "run",
    ) -> None:
        super().__init__(source, zone, recheck=recheck, on_error=on_error)
        if not 0 < percentile < 100:
            raise InvalidInputError(f"percentile={percentile} must be between 0 and 100")
        self.percentile = percentile
        self.window = pd.Timedelta(days=day_span(days, "days"))
        self.max_age = pd.Timedelta(max_age)

    def _decide(self, now: pd.Timestamp, work: pd.Timedelta, latest: pd.Timestamp | None) -> Decision:
        recent = self._recent(now, self.window)
        value, source = self._current(recent, now, self.max_age)
        limit = float(np.percentile(recent.values.dropna().to_numpy(), self.percentile))
        facts = {"intensity": value, "source": source}
        if value <= limit:
            return Decision.run(
                f"intensity {value:.0f} at or below the {self.percentile:g}th percentile of the last "
                f"{self.window.days} days ({limit:.0f})",
                **facts,
            )
        return Decision.pause_until(
            self._hold_until(now, latest),
            f"intensity {value:.0f} above the {self.percentile:g}th percentile of the last {self.window.days} days ({limit:.0f})",
            **facts,
        )


class ForecastWindowStrategy(_Base):
    """Follow the cheapest interruptible plan to the deadline, re-planned on every call as actuals arrive.

    The forecast is the product's blend (`carbon_sensors.forecast.combine.assemble_forecast`): the source's
    own forecast (unless `use_source_forecast` is false) and our model fitted on `history_days` of the
    source's history, weighted per hour ahead by their measured errors; our model alone beyond the source's
    horizon or when it has none. The provider forecast is asked on every call; the model is fitted once per
    hour of `now` and reused by this instance's later calls in that hour. A job's first pause is not taken
    when it saves less than `min_savings` percent against running now (`carbon_sensors.worth`); once held
    (`paused_since`, carried across deferrals by the faces), re-plans follow the plan: re-checking the
    saving at every re-plan cost 0.02-0.09 of the oracle's savings in the backtest.
    """

    def __init__(
        self,
        source: IntensitySource,
        zone: str,
        *,
        min_chunk: timedelta = timedelta(hours=1),
        history_days: float = MODEL_HISTORY_DAYS,
        horizon: timedelta = timedelta(hours=48),
        use_source_forecast: bool = True,
        min_savings: float = DEFAULT_MIN_SAVINGS,
        recheck: timedelta = timedelta(hours=1),
        on_error: OnError = "run",
    ) -> None:
        super().__init__(source, zone, recheck=recheck, on_error=on_error)
        self.min_savings = check_min_savings(min_savings)
        self.min_chunk = pd.Timedelta(min_chunk)
        self.history = pd.Timedelta(days=day_span(history_days, "history_days"))
        self.horizon = pd.Timedelta(horizon)
        self.use_source_forecast = use_source_forecast
        self._model = ModelPerHour()

    def forecast(self, now: pd.Timestamp) -> IntensitySignal:
        """The product's forecast (provider and our model blended per horizon) from the hour containing `now`."""
        return assemble_forecast(
            self.source,
            self.zone,
            now,
            self.horizon,
            history=self.history,
            use_provider=self.use_source_forecast,
            fit=self._model,
        )

    def _decide(self, now: pd.Timestamp, work: pd.Timedelta, latest: pd.Timestamp | None) -> Decision:
        if work <= pd.Timedelta(0):
            return Decision.run("no work left")
        forecast = self.forecast(now)
        deadline = forecast.end if latest is None else latest + work
        plan = plan_slots(
            forecast, duration=work, deadline=deadline, earliest_start=now, min_chunk=self.min_chunk
        )
        facts = {"intensity": plan.expected_intensity, "source": plan.forecast_source}
        if plan.fallback:
            return Decision.run(plan.reason, fallback=True, source=plan.forecast_source)
        first_start, first_end = plan.slots[0]
        if first_start <= now:
            return Decision.run(
                f"in a planned slot until {first_end:%Y-%m-%dT%H:%MZ}; {plan.reason}", **facts
            )
        if self.paused_since is None and (small := not_worth_holding(plan, self.min_savings)):
            return Decision.run(small, intensity=plan.run_now_intensity, source=plan.forecast_source)
        self.paused_since = self.paused_since or now  # held once: later re-plans follow the plan
        return Decision.pause_until(
            first_start, f"next planned slot starts {first_start:%Y-%m-%dT%H:%MZ}; {plan.reason}", **facts
        )


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "threshold": ThresholdStrategy,
    "adaptive": AdaptiveStrategy,
    "forecast-window": ForecastWindowStrategy,
}
_COMMON: Schema = {"recheck": Option(duration), "on_error": Option(choice("run", "pause"))}
# The options each strategy takes from JSON (a test keeps them equal to the constructors' keywords).
STRATEGY_OPTIONS: dict[str, Schema] = {
    "threshold": {
        "pause_above": Option(number, required=True),
        "resume_below": Option(number, required=True),
        "max_pause": Option(duration, required=True),
        "max_age": Option(duration),
        **_COMMON,
    },
    "adaptive": {
        "percentile": Option(number, required=True),
        "days": Option(number, required=True),
        "max_age": Option(duration),
        **_COMMON,
    },
    "forecast-window": {
        "min_chunk": Option(duration),
        "history_days": Option(number),
        "horizon": Option(duration),
        "use_source_forecast": Option(boolean),
        "min_savings": Option(number),
        **_COMMON,
    },
}


def build_strategy(
    name: str, source: IntensitySource, zone: str, options: Mapping[str, Any] | None = None
) -> Strategy:
    """The strategy `name` (a key of `STRATEGIES`) built from JSON-like options, as Airflow and Prefect get them.

    Options are parsed by `STRATEGY_OPTIONS`: durations as '15min', ISO 8601 ('PT15M') or timedelta, never a
    bare number. A missing, unknown or ill-typed option is an error naming it and what the strategy takes.
    """
    if name not in STRATEGIES:
        raise InvalidInputError(f"strategy={name!r} is not valid; use one of {list(STRATEGIES)}")
    kwargs = parse_options(f"strategy={name!r}", STRATEGY_OPTIONS[name], options)
    return STRATEGIES[name](source, zone, **kwargs)
