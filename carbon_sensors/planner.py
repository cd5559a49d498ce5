"""Plans: when (and where) to run a job of a given length so it finishes by its deadline on the cleanest power.

All three modes work on the step function a forecast describes. A window's intensity is the time-weighted
mean over the periods it overlaps, so starts need not align with periods. The best contiguous start is one
of a finite set of breakpoints (the window's start or end on a period boundary, or the earliest/latest
start), which makes the search exact. Deadline guarantee: every plan ends at or before `deadline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from carbon_sensors.errors import IncompatibleSignalsError, InvalidInputError, UnknownZoneError
from carbon_sensors.signal import IntensitySignal
from carbon_sensors.timeutil import require_utc, utcnow

Slot = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class Plan:
    """When to run: start/end (UTC), the slots actually run, expected vs run-now intensity, and why."""

    zone: str
    start: pd.Timestamp
    end: pd.Timestamp
    slots: list[Slot]
    expected_intensity: float | None
    run_now_intensity: float | None
    savings_pct: float | None
    forecast_source: str
    kind: str
    fallback: bool
    reason: str
    mode: str = "window"
    deadline: pd.Timestamp | None = None
    alternatives: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "mode": self.mode,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "slots": [[a.isoformat(), b.isoformat()] for a, b in self.slots],
            "expected_intensity": _round(self.expected_intensity),
            "run_now_intensity": _round(self.run_now_intensity),
            "savings_pct": _round(self.savings_pct),
            "forecast_source": self.forecast_source,
            "kind": self.kind,
            "fallback": self.fallback,
            "reason": self.reason,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "alternatives": {k: _round(v) for k, v in self.alternatives.items()},
        }


def _round(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 3)


@dataclass(frozen=True)
class _Steps:
    """The forecast as a step function: edges (ns since epoch), the integral of the value up to each edge, and
    the integral of "unknown" time (gaps, NaN) so a window touching unknown time is refused, not guessed."""

    edges: np.ndarray
    rates: np.ndarray
    unknown_rates: np.ndarray
    value_integral: np.ndarray
    unknown_integral: np.ndarray

    @classmethod
    def of(cls, forecast: IntensitySignal) -> _Steps:
        starts = pd.DatetimeIndex(forecast.values.index).as_unit("ns").asi8.astype("float64")
        step = float(forecast.resolution.value)
        ends = np.minimum(np.append(starts[1:], starts[-1] + step), starts + step)  # missing rows are gaps
        values = forecast.values.to_numpy(dtype="float64")
        edges = np.empty(2 * len(starts))
        edges[0::2], edges[1::2] = starts, ends
        rates = np.zeros(2 * len(starts))  # odd segments: between a period's end and the next start
        unknown = np.ones(2 * len(starts))
        rates[0::2] = np.nan_to_num(values)
        unknown[0::2] = np.isnan(values)
        widths = np.append(np.diff(edges), 0.0)
        return cls(
            edges,
            rates,
            unknown,
            np.concatenate([[0.0], np.cumsum(rates * widths)[:-1]]),
            np.concatenate([[0.0], np.cumsum(unknown * widths)[:-1]]),
        )

    def _at(self, at: np.ndarray, rates: np.ndarray, integral: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.edges, at, side="right") - 1, 0, len(self.edges) - 1)
        return np.asarray(integral[pos] + rates[pos] * (at - self.edges[pos]))

    def mean(self, start: np.ndarray, length: float) -> np.ndarray:
        """Time-weighted mean over [start, start + length); NaN where the window leaves known data."""
        stop = start + length
        value = self._at(stop, self.rates, self.value_integral) - self._at(
            start, self.rates, self.value_integral
        )
        unknown = self._at(stop, self.unknown_rates, self.unknown_integral) - self._at(
            start, self.unknown_rates, self.unknown_integral
        )
        inside = (start >= self.edges[0]) & (stop <= self.edges[-1]) & (unknown <= 1e-6 * length)
        return np.where(inside, value / length, np.nan)


def _check(
    forecast: IntensitySignal, duration: timedelta, deadline: datetime, earliest_start: datetime | None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timedelta]:
    end = require_utc(deadline, "deadline")
    if earliest_start is not None:
        first = require_utc(earliest_start, "earliest_start")
    elif not forecast.values.empty:
        first = forecast.start
    else:
        first = utcnow()
    length = pd.Timedelta(duration)
    if length <= pd.Timedelta(0):
        raise InvalidInputError(f"duration={duration} must be longer than zero")
    if end <= first:
        raise InvalidInputError(
            f"deadline={end.isoformat()} is not after the earliest start {first.isoformat()}; "
            "give a deadline in the future"
        )
    if first + length > end:
        raise InvalidInputError(
            f"duration={length} does not fit between earliest start {first.isoformat()} and deadline "
            f"{end.isoformat()} (only {end - first} left)"
        )
    return first, end, length


def _fallback(
    forecast: IntensitySignal,
    first: pd.Timestamp,
    length: pd.Timedelta,
    end: pd.Timestamp,
    why: str,
    mode: str,
) -> Plan:
    return Plan(
        zone=forecast.zone,
        start=first,
        end=first + length,
        slots=[(first, first + length)],
        expected_intensity=None,
        run_now_intensity=None,
        savings_pct=None,
        forecast_source=forecast.source,
        kind=forecast.kind.value,
        fallback=True,
        reason=f"fallback: run at the earliest start because {why}",
        mode=mode,
        deadline=end,
    )


def _chosen(
    forecast: IntensitySignal,
    slots: list[tuple[pd.Timestamp, pd.Timestamp]],
    expected: float,
    run_now: float | None,
    reason: str,
    mode: str,
    deadline: pd.Timestamp,
) -> Plan:
    """A plan the forecast decided (not a fallback)."""
    return Plan(
        zone=forecast.zone,
        start=slots[0][0],
        end=slots[-1][1],
        slots=slots,
        expected_intensity=expected,
        run_now_intensity=run_now,
        savings_pct=_savings(expected, run_now),
        forecast_source=forecast.source,
        kind=forecast.kind.value,
        fallback=False,
        reason=reason,
        mode=mode,
        deadline=deadline,
    )


def _savings(expected: float, now: float | None) -> float | None:
    return None if now is None or not np.isfinite(now) or now <= 0 else 100.0 * (now - expected) / now


def plan_window(
    forecast: IntensitySignal,
    *,
    duration: timedelta,
    deadline: datetime,
    earliest_start: datetime | None = None,
) -> Plan:
    """The best contiguous window of `duration` that starts at or after `earliest_start` and ends by `deadline`."""
    first, end, length = _check(forecast, duration, deadline, earliest_start)
    usable = forecast.values.dropna()
    if usable.empty:
        return _fallback(forecast, first, length, end, "the forecast has no usable values", "window")
    steps = _Steps.of(forecast)
    lo, hi, span = float(first.value), float((end - length).value), float(length.value)
    candidates = np.concatenate([[lo, hi], steps.edges, steps.edges - span])
    candidates = np.unique(candidates[(candidates >= lo) & (candidates <= hi)])
    means = steps.mean(candidates, span)
    if not np.isfinite(means).any():
        return _fallback(
            forecast, first, length, end, "no window before the deadline is covered by the forecast", "window"
        )
    best = int(np.nanargmin(means))
    # Candidates are float nanoseconds (exact only to ~256 ns today): clamp so the guarantee holds exactly.
    start = min(max(pd.Timestamp(int(candidates[best]), tz="UTC"), first), end - length)
    now = float(steps.mean(np.array([lo]), span)[0])
    expected = float(means[best])
    run_now = now if np.isfinite(now) else None
    reason = f"lowest mean forecast intensity over {_text(length)} that finishes by {end.isoformat()}"
    return _chosen(forecast, [(start, start + length)], expected, run_now, reason, "window", end)


def plan_slots(
    forecast: IntensitySignal,
    *,
    duration: timedelta,
    deadline: datetime,
    earliest_start: datetime | None = None,
    min_chunk: timedelta,
) -> Plan:
    """Interruptible job: the cheapest set of slots adding up to `duration`, each run at least `min_chunk` long.

    Slots are periods of the forecast's resolution counted from `earliest_start`; the last slot is trimmed to
    the exact duration. Exact by dynamic programming over (period, work done, current run length).
    """
    first, end, length = _check(forecast, duration, deadline, earliest_start)
    chunk = pd.Timedelta(min_chunk)
    if chunk <= pd.Timedelta(0):
        raise InvalidInputError(f"min_chunk={min_chunk} must be longer than zero")
    if forecast.values.dropna().empty:
        return _fallback(forecast, first, length, end, "the forecast has no usable values", "slots")
    step = forecast.resolution
    periods = int((end - first) // step)
    need = int(np.ceil(length / step))
    if periods < need:  # the work only fits by using a partial period: no choice worth making
        return _as_slots(plan_window(forecast, duration=length, deadline=end, earliest_start=first))
    starts = np.array([float((first + i * step).value) for i in range(periods)])
    costs = _Steps.of(forecast).mean(starts, float(step.value))
    if not np.isfinite(costs).any():
        return _fallback(
            forecast, first, length, end, "no period before the deadline is covered by the forecast", "slots"
        )
    chosen = _cheapest_runs(
        np.where(np.isfinite(costs), costs, np.inf), need, max(1, min(need, int(np.ceil(chunk / step))))
    )
    if chosen is None:
        return _fallback(
            forecast, first, length, end, "the forecast leaves no feasible set of slots", "slots"
        )
    slots = _merge([(first + i * step, first + (i + 1) * step) for i in chosen], need * step - length)
    expected = _slot_mean(forecast, slots)
    run_now = float(_Steps.of(forecast).mean(np.array([float(first.value)]), float(length.value))[0])
    run_now_value = run_now if np.isfinite(run_now) else None
    reason = (
        f"cheapest {len(slots)} slot(s) of at least {_text(chunk)} adding up to {_text(length)}, "
        f"done by {end.isoformat()}"
    )
    return _chosen(forecast, slots, expected, run_now_value, reason, "slots", end)


def _as_slots(plan: Plan) -> Plan:
    return Plan(**{**plan.__dict__, "mode": "slots"})


def _slot_mean(forecast: IntensitySignal, slots: list[Slot]) -> float:
    steps = _Steps.of(forecast)
    total = sum(
        float(steps.mean(np.array([float(a.value)]), float((b - a).value))[0]) * (b - a).value
        for a, b in slots
    )
    return total / sum((b - a).value for a, b in slots)


def _merge(periods: list[Slot], trim: pd.Timedelta) -> list[Slot]:
    """Join adjacent periods into slots and cut `trim` off the end of the last one (exact duration)."""
    slots: list[Slot] = []
    for a, b in periods:
        if slots and slots[-1][1] == a:
            slots[-1] = (slots[-1][0], b)
        else:
            slots.append((a, b))
    last_start, last_end = slots[-1]
    slots[-1] = (last_start, last_end - trim)
    return slots


def _cheapest_runs(costs: np.ndarray, need: int, chunk: int) -> list[int] | None:
    """Indices of `need` periods minimising total cost where every run of consecutive periods is >= `chunk`."""
    n, inf = len(costs), np.inf
    # state 0: off; state r (1..chunk): on with run length r (chunk means "chunk or more")
    best = np.full((chunk + 1, need + 1), inf)
    best[0, 0] = 0.0
    came: list[np.ndarray] = []
    for i in range(n):
        new = np.full_like(best, inf)
        origin = np.zeros((chunk + 1, need + 1), dtype=np.int64)
        stay_off = np.minimum(best[0], best[chunk])
        new[0] = stay_off
        origin[0] = np.where(best[0] <= best[chunk], 0, chunk)
        for r in range(1, chunk + 1):
            prev = best[r - 1, :-1] if r > 1 else best[0, :-1]
            src = np.full(need, r - 1 if r > 1 else 0)
            if r == chunk:
                keep = best[chunk, :-1]
                take = keep < prev
                prev, src = np.where(take, keep, prev), np.where(take, chunk, src)
            new[r, 1:] = prev + costs[i]
            origin[r, 1:] = src
        came.append(origin)
        best = new
    final = 0 if best[0, need] <= best[chunk, need] else chunk
    if not np.isfinite(best[final, need]):
        return None
    chosen, state, work = [], final, need
    for i in range(n - 1, -1, -1):
        prev_state = int(came[i][state, work])
        if state > 0:
            chosen.append(i)
            work -= 1
        state = prev_state
    return sorted(chosen)


def plan_zones(
    forecasts: dict[str, IntensitySignal],
    *,
    duration: timedelta,
    deadline: datetime,
    earliest_start: datetime | None = None,
    zones: Sequence[str] | None = None,
) -> Plan:
    """The best (zone, start) across several zones' forecasts of one kind; `alternatives` lists each zone."""
    if not forecasts:
        raise InvalidInputError("plan_zones needs at least one zone's forecast")
    wanted = list(zones) if zones is not None else list(forecasts)
    unknown = [z for z in wanted if z not in forecasts]
    if unknown:
        raise UnknownZoneError(f"zone(s) {unknown} have no forecast; known zones: {sorted(forecasts)}")
    kinds = {forecasts[z].kind for z in wanted}
    if len(kinds) > 1:
        raise IncompatibleSignalsError(
            f"zones {wanted} mix signal kinds {sorted(k.value for k in kinds)}; compare average with average only"
        )
    for key in wanted:
        if forecasts[key].zone != key:
            raise InvalidInputError(f"forecast under key {key!r} is for zone {forecasts[key].zone!r}")
    plans = {
        z: plan_window(forecasts[z], duration=duration, deadline=deadline, earliest_start=earliest_start)
        for z in wanted
    }
    usable = {z: p for z, p in plans.items() if not p.fallback and p.expected_intensity is not None}
    alternatives = {z: p.expected_intensity for z, p in plans.items()}
    if not usable:
        first = plans[wanted[0]]
        return Plan(
            **{
                **first.__dict__,
                "mode": "zones",
                "alternatives": alternatives,
                "reason": first.reason + " (no zone had a usable forecast)",
            }
        )
    zone = min(usable, key=lambda z: float(usable[z].expected_intensity or 0.0))
    chosen = usable[zone]
    return Plan(
        **{
            **chosen.__dict__,
            "mode": "zones",
            "alternatives": alternatives,
            "reason": f"{zone} has the lowest expected intensity of {len(wanted)} zone(s); {chosen.reason}",
        }
    )


def _text(delta: pd.Timedelta) -> str:
    """'3h', '1h30min': how people write a job length."""
    minutes = int(delta.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest}min" if hours and rest else f"{hours}h" if hours else f"{rest}min"
