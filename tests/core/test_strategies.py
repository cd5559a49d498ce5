"""Strategies on the real recorded traces: hysteresis, max pause, percentile, forecast window, deadlines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbon_sensors.decision import Action
from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import AdaptiveStrategy, ForecastWindowStrategy, OnError, ThresholdStrategy

T = pd.Timestamp
NOW = T("2023-06-01T08:10Z")  # DE: 231 g in the 08:00 hour, 185 g around noon
DEADLINE = T("2023-06-02T06:00Z")
SOURCE = TraceProvider()
WORK = timedelta(hours=3)


def threshold(**kw: Any) -> ThresholdStrategy:
    args: dict[str, Any] = {
        "pause_above": 220.0,
        "resume_below": 200.0,
        "max_pause": timedelta(hours=3),
    } | kw
    return ThresholdStrategy(SOURCE, "DE", **args)


def test_threshold_pauses_above_and_holds_until_below_resume() -> None:
    strategy = threshold()
    first = strategy.decide(NOW, remaining_work=WORK, deadline=DEADLINE)
    assert first.action is Action.PAUSE and first.intensity == pytest.approx(231.06)
    assert first.until is not None and NOW < first.until <= DEADLINE - WORK
    # 210 g sits between resume_below and pause_above: a paused job stays paused (hysteresis)
    between = ThresholdStrategy(
        SOURCE, "DE", pause_above=240.0, resume_below=200.0, max_pause=timedelta(hours=3)
    )
    assert between.decide(NOW, remaining_work=WORK, deadline=DEADLINE).action is Action.RUN
    strategy_low = threshold(pause_above=220.0, resume_below=190.0)
    strategy_low.decide(NOW, remaining_work=WORK, deadline=DEADLINE)
    later = strategy_low.decide(T("2023-06-01T09:10Z"), remaining_work=WORK, deadline=DEADLINE)
    assert later.action is Action.PAUSE and "resume below 190" in later.reason


def test_threshold_max_pause_bounds_the_hold() -> None:
    strategy = threshold(max_pause=timedelta(hours=1), resume_below=150.0)
    assert strategy.decide(NOW, remaining_work=WORK, deadline=DEADLINE).action is Action.PAUSE
    after = strategy.decide(NOW + pd.Timedelta(hours=1), remaining_work=WORK, deadline=DEADLINE)
    assert after.action is Action.RUN and "max pause" in after.reason
    # the hold ended by max_pause does not start again while the grid stays dirty (no pause/resume cycle)
    again = strategy.decide(NOW + pd.Timedelta(hours=1, minutes=30), remaining_work=WORK, deadline=DEADLINE)
    assert again.action is Action.RUN and "max pause" in again.reason


def test_max_pause_holds_during_an_outage_too() -> None:
    """B8: with on_error="pause" an outage paused at every check, ignoring max_pause (11 deferrals in 6 min)."""
    strategy = ThresholdStrategy(
        SOURCE, "XX", pause_above=1, resume_below=0, max_pause=timedelta(minutes=2),
        recheck=timedelta(seconds=30), on_error="pause",
    )  # fmt: skip
    checks = [
        strategy.decide(NOW + pd.Timedelta(seconds=30 * i), remaining_work=WORK, deadline=DEADLINE)
        for i in range(12)
    ]
    assert all(d.fallback for d in checks)
    held = [d for d in checks if d.action is Action.PAUSE]
    assert len(held) == 4 and all(
        d.until is not None and d.until <= NOW + pd.Timedelta(minutes=2) for d in held
    )
    assert all(d.action is Action.RUN for d in checks[4:]) and "max pause" in checks[4].reason


def test_adaptive_uses_the_percentile_of_recent_days() -> None:
    strict = AdaptiveStrategy(SOURCE, "DE", percentile=30, days=7).decide(
        NOW, remaining_work=WORK, deadline=DEADLINE
    )
    assert strict.action is Action.PAUSE and "30th percentile" in strict.reason
    loose = AdaptiveStrategy(SOURCE, "DE", percentile=95, days=7).decide(
        NOW, remaining_work=WORK, deadline=DEADLINE
    )
    assert loose.action is Action.RUN


def test_forecast_window_follows_the_plan_and_replans() -> None:
    strategy = ForecastWindowStrategy(SOURCE, "DE", use_source_forecast=False)
    wait = strategy.decide(NOW, remaining_work=WORK, deadline=DEADLINE)
    assert wait.action is Action.PAUSE and wait.until is not None
    assert wait.until <= DEADLINE - WORK
    go = strategy.decide(wait.until, remaining_work=WORK, deadline=DEADLINE)
    assert go.action is Action.RUN and "planned slot" in go.reason


def test_deadline_forces_run_for_every_strategy() -> None:
    tight = DEADLINE - WORK
    for strategy in (
        threshold(),
        AdaptiveStrategy(SOURCE, "DE", percentile=10, days=7),
        ForecastWindowStrategy(SOURCE, "DE"),
    ):
        decision = strategy.decide(tight, remaining_work=WORK, deadline=DEADLINE)
        assert decision.action is Action.RUN and "deadline" in decision.reason


@pytest.mark.parametrize("on_error", ["run", "pause"])
def test_source_error_gives_explicit_bounded_fallback(on_error: OnError) -> None:
    for strategy in (
        ThresholdStrategy(
            SOURCE, "XX", pause_above=1, resume_below=0, max_pause=timedelta(hours=1), on_error=on_error
        ),
        AdaptiveStrategy(SOURCE, "XX", percentile=50, days=7, on_error=on_error),
        ForecastWindowStrategy(SOURCE, "XX", on_error=on_error),
    ):
        decision = strategy.decide(NOW, remaining_work=WORK, deadline=DEADLINE)
        assert decision.fallback and "fallback" in decision.reason and "XX" in decision.reason
        assert decision.action is (Action.RUN if on_error == "run" else Action.PAUSE)
        assert decision.until is None or decision.until <= DEADLINE - WORK


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="resume_below"):
        threshold(pause_above=100.0, resume_below=200.0)
    with pytest.raises(InvalidInputError, match="percentile"):
        AdaptiveStrategy(SOURCE, "DE", percentile=120, days=7)
    with pytest.raises(InvalidInputError, match=r"history_days=0 must be more than 0"):
        ForecastWindowStrategy(SOURCE, "DE", history_days=0)  # was a fallback at every decision
    with pytest.raises(NaiveDatetimeError):
        threshold().decide(T("2023-06-01T08:00"), remaining_work=WORK, deadline=DEADLINE)


@settings(max_examples=40, deadline=None)
@given(
    start_min=st.integers(0, 60 * 24 * 20),
    work_min=st.integers(0, 600),
    slack_min=st.integers(-120, 2000),
    which=st.sampled_from(["threshold", "adaptive"]),
)
def test_strategies_never_hold_past_the_latest_start(
    start_min: int, work_min: int, slack_min: int, which: str
) -> None:
    now = T("2023-02-01T00:00Z") + pd.Timedelta(minutes=start_min)
    work = pd.Timedelta(minutes=work_min)
    deadline = now + work + pd.Timedelta(minutes=slack_min)
    strategy = (
        threshold(pause_above=0.0, resume_below=0.0, max_pause=timedelta(days=5))
        if which == "threshold"
        else (AdaptiveStrategy(SOURCE, "DE", percentile=1, days=7))
    )
    decision = strategy.decide(now, remaining_work=work, deadline=deadline)
    if slack_min <= 0:
        assert decision.action is Action.RUN
    if decision.until is not None:
        assert decision.until <= deadline - work


@settings(max_examples=8, deadline=None)
@given(start_min=st.integers(0, 60 * 24 * 20), work_min=st.integers(1, 360), slack_min=st.integers(-60, 1500))
def test_forecast_window_never_holds_past_the_latest_start(
    start_min: int, work_min: int, slack_min: int
) -> None:
    now = T("2023-03-01T00:00Z") + pd.Timedelta(minutes=start_min)
    work = pd.Timedelta(minutes=work_min)
    deadline = now + work + pd.Timedelta(minutes=slack_min)
    decision = ForecastWindowStrategy(SOURCE, "DE", use_source_forecast=False).decide(
        now, remaining_work=work, deadline=deadline
    )
    if slack_min <= 0:
        assert decision.action is Action.RUN
    if decision.until is not None:
        assert decision.until <= deadline - work
