"""The deadline guard above every strategy: robust work estimates, unsized loaders, late runs, no flip-flop.

Training runs on a fake grid clock that each step moves on by its step time, so a job's grid-time timeline is
exact and a test takes milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from training_models import AlwaysPause, FakeClock

from carbon_sensors.decision import Action, Decision, Strategy
from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.replay import GridClock, Replay
from carbon_sensors.strategies import AdaptiveStrategy, ThresholdStrategy
from carbon_sensors.training import TrainingJob, TrainingResult, TrainingRunner
from carbon_sensors.training.session import settings_on_clock

START = pd.Timestamp("2023-06-01T20:00Z")  # DE is above 0 g at every hour: a zero threshold always pauses
STEPS = 16


class Unsized:
    """An iterable data loader without len() (a stream), re-iterable per epoch."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.batches)


def timed_job(
    clock: FakeClock, step: timedelta, *, sized: bool = True, first_step: timedelta | None = None
) -> TrainingJob:
    """16 steps; each moves the grid clock on by `step` (the first after every start by `first_step`)."""
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 2, generator=data), torch.randn(32, 1, generator=data)
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 32, 2)]
    model = nn.Linear(2, 1)
    started = {"warm": True}

    def step_fn(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        clock.now += first_step if (first_step is not None and started["warm"]) else step
        started["warm"] = False
        return nn.functional.mse_loss(net(batch[0]), batch[1])

    loader: Any = batches if sized else Unsized(batches)
    return TrainingJob(model, torch.optim.SGD(model.parameters(), lr=0.01), loader, step_fn=step_fn)


def finished_at(result: TrainingResult) -> pd.Timestamp:
    assert result.report.finished_at is not None
    return pd.Timestamp(result.report.finished_at)


def monitor() -> PowerMonitor:
    return PowerMonitor([EstimateMeter()], start=False)


def train_to_the_end(
    tmp_path: Path,
    clock: FakeClock,
    strategy: Strategy,
    deadline: pd.Timestamp,
    *,
    step: timedelta,
    sized: bool = True,
    expected_duration: timedelta | None = None,
    overhead: timedelta = timedelta(0),
    latency: float = 1.0,
    first_step: timedelta | None = None,
) -> tuple[list[TrainingResult], list[Decision]]:
    """Run, and resume every pause from its checkpoint `latency` x `overhead` after its end, as a scheduler would."""
    results: list[TrainingResult] = []
    decisions: list[Decision] = []
    resume: str | None = None
    for _ in range(50):
        runner = TrainingRunner(
            timed_job(clock, step, sized=sized, first_step=None if results else first_step), checkpoint_dir=tmp_path, strategy=strategy,
            deadline=deadline, clock=clock, monitor=monitor(), decision_refresh_seconds=0.0,
            expected_duration=expected_duration, resume_overhead=overhead,
        )  # fmt: skip
        original = runner.session._decide

        def recorded(now: pd.Timestamp, runner_decide: Any = original) -> Decision:
            decision: Decision = runner_decide(now)
            decisions.append(decision)
            return decision

        runner.session._decide = recorded  # type: ignore[method-assign]
        result = runner.run(resume_from=resume)
        results.append(result)
        if result.status != "paused":
            return results, decisions
        assert result.paused_until is not None and result.checkpoint_path is not None
        clock.now = max(clock.now, result.paused_until + overhead * latency)
        resume = result.checkpoint_path
    raise AssertionError("more than 50 pauses")


def test_a_slow_first_step_does_not_dominate_the_estimate(tmp_path: Path) -> None:
    """Under replay at 1800x one slow first step made "6 days of work left" for a 14.7 h job: it ran regardless."""
    clock = FakeClock(START)
    deadline = START + timedelta(hours=3)
    results, decisions = train_to_the_end(
        tmp_path,
        clock,
        AlwaysPause(hours=10),
        deadline,
        step=timedelta(minutes=1),
        first_step=timedelta(hours=2),
    )
    first = decisions[0]
    assert first.action is Action.PAUSE and "to meet the deadline" in first.reason  # not "running regardless"
    assert results[0].steps_done == 2 and results[-1].status == "completed"
    assert finished_at(results[-1]) <= deadline


def test_an_unsized_loader_is_assumed_to_need_all_the_time_left(tmp_path: Path) -> None:
    """B4: a loader without len() counted as no work left: held to the deadline, it finished 30 min late."""
    clock = FakeClock(START)
    deadline = START + timedelta(hours=2)
    results, decisions = train_to_the_end(
        tmp_path, clock, AlwaysPause(hours=10), deadline, step=timedelta(minutes=2), sized=False
    )
    assert [r.status for r in results] == ["completed"] and results[0].steps_done == STEPS
    assert "the remaining work is unknown" in decisions[0].reason and "no len()" in decisions[0].reason
    assert finished_at(results[0]) <= deadline


def test_an_unsized_loader_with_expected_duration_is_held_only_so_long(tmp_path: Path) -> None:
    clock = FakeClock(START)
    deadline = START + timedelta(hours=2)
    results, decisions = train_to_the_end(
        tmp_path, clock, AlwaysPause(hours=10), deadline, step=timedelta(minutes=2), sized=False,
        expected_duration=timedelta(minutes=32),
    )  # fmt: skip
    assert results[0].status == "paused" and results[-1].status == "completed"
    assert (
        decisions[0].until is not None and decisions[0].until == deadline - timedelta(minutes=28) * 1.1
    )  # 2 steps done
    assert finished_at(results[-1]) <= deadline


def test_decisions_refresh_on_the_grid_clock(tmp_path: Path) -> None:
    """Under replay the refresh interval is grid time: 16 one-minute steps, a decision every 4 minutes."""
    calls: list[pd.Timestamp] = []

    class Counting:
        def decide(
            self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
        ) -> Decision:
            calls.append(now)
            return Decision.run("counting")

    clock = FakeClock(START)
    runner = TrainingRunner(
        timed_job(clock, timedelta(minutes=1)), checkpoint_dir=tmp_path, strategy=Counting(), clock=clock,
        monitor=monitor(), decision_refresh_seconds=240.0,
    )  # fmt: skip
    result = runner.run()
    assert result.status == "completed"
    assert len(calls) == 4 and all(b - a >= timedelta(minutes=4) for a, b in itertools.pairwise(calls))


def test_once_the_guard_said_run_a_resumed_run_never_pauses(tmp_path: Path) -> None:
    """B8: resumed at the latest start, it paused again (deferrals 13 -> 14); the guard's word is checkpointed."""
    clock = FakeClock(START)
    deadline = START + timedelta(minutes=40)
    results, decisions = train_to_the_end(
        tmp_path, clock, AlwaysPause(hours=10), deadline, step=timedelta(minutes=1),
        overhead=timedelta(minutes=5), latency=0.0,  # woken exactly at the latest start
    )  # fmt: skip
    ran = next(i for i, d in enumerate(decisions) if d.reason.startswith("deadline guard:"))
    assert all(d.action is Action.RUN for d in decisions[ran:])
    assert [r.status for r in results] == ["paused", "completed"]


def strategy_named(name: str) -> Strategy:
    if name == "hostile":
        return AlwaysPause(hours=1000)
    if name == "threshold":
        return ThresholdStrategy(
            TraceProvider(), "DE", pause_above=0.0, resume_below=0.0, max_pause=timedelta(days=9)
        )
    return AdaptiveStrategy(TraceProvider(), "DE", percentile=1, days=7)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["hostile", "threshold", "adaptive"]),
    sized=st.booleans(),
    expected=st.sampled_from([None, 1.0, 1.5]),
    step_s=st.integers(10, 600),
    slack=st.floats(-3.0, 6.0),
    overhead_min=st.integers(0, 30),
    latency=st.floats(0.0, 1.0),
)
def test_no_job_ever_ends_after_its_deadline(
    tmp_path_factory: pytest.TempPathFactory, name: str, sized: bool, expected: float | None, step_s: int,
    slack: float, overhead_min: int, latency: float,
) -> None:  # fmt: skip
    """Whatever the strategy (a hostile factory always says wait), sized or not, with resume latency up to the
    margin: a job that can finish by its deadline does; a late one (negative slack) runs at once, no pause."""
    step = timedelta(seconds=step_s)
    work = step * STEPS
    overhead = timedelta(minutes=overhead_min)
    deadline = START + work + overhead + work * max(slack, 0.0) if slack >= 0 else START + work * slack
    clock = FakeClock(START)
    results, decisions = train_to_the_end(
        tmp_path_factory.mktemp("job"), clock, strategy_named(name), deadline, step=step, sized=sized,
        expected_duration=None if expected is None else work * expected, overhead=overhead, latency=latency,
    )  # fmt: skip
    final = results[-1]
    assert final.status == "completed" and final.steps_done == STEPS
    guard_ran = [i for i, d in enumerate(decisions) if d.reason.startswith("deadline guard:")]
    if guard_ran:
        assert all(d.action is Action.RUN for d in decisions[guard_ran[0] :])  # no flip-flop
    if slack < 0:
        assert len(results) == 1 and "late run" in decisions[0].reason
    else:
        assert finished_at(final) <= deadline


def test_both_faces_size_an_unsized_job_on_their_clock() -> None:
    """`expected_duration` is the job's wall run time; under replay (a day a minute) the guard works in grid time."""
    replay = Replay(START, pd.Timestamp("2026-01-01T00:00Z"), speed=1440.0)
    replayed = settings_on_clock(GridClock(replay), expected_duration=timedelta(minutes=3), zone="DE")
    live = settings_on_clock(GridClock(), expected_duration=timedelta(minutes=3), zone="DE")
    assert replayed.expected_duration == timedelta(hours=72)  # 3 min x 1440
    assert live.expected_duration == timedelta(minutes=3)
    assert replayed.clock is not None and abs(replayed.clock() - replay.trace_time()) < timedelta(minutes=1)
    assert replayed.zone == "DE" and settings_on_clock(GridClock()).expected_duration is None
