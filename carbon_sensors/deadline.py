"""The deadline guard: whatever a strategy says, a job starts (or resumes) in time to finish by its deadline.

Why one place: the training runner, the Airflow operator (also when it is woken from a deferral, before any
training code runs) and the Prefect flow all ask a strategy, built-in or a user's factory, and all must apply the
same rule. Everything here is grid time (see `carbon_sensors.replay.GridClock`).

- Remaining work is estimated from measured step times (`StepTimes`: the median of recent steps, so one slow
  first step cannot dominate), else from an `expected_duration`, else it is unknown and the guard assumes the
  job needs all the time left, and says so.
- The latest start keeps a margin: `deadline - upper estimate of the work - resume overhead` (scheduler
  latency, worker pick-up, a DAG re-parse per wake).
- Once the guard says "run to finish" it never lets the job pause again (no flip-flop), and a run that starts
  after its deadline (a late rerun) runs at once; both are logged.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from carbon_sensors.decision import Action, Decision, Strategy
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.timeutil import parse_duration, parse_utc

if TYPE_CHECKING:
    from carbon_sensors.replay import GridClock

log = logging.getLogger(__name__)

RECENT_STEPS = 64  # how many recent step times the estimate looks at
UPPER_FACTOR = (
    1.1  # the upper estimate is at least this factor over the median (and over an expected_duration)
)
UPPER_SIGMAS = 2.0  # ... plus this many standard deviations of the sum of the steps left
# Wall time from "resume now" to the first resumed step on an orchestrator: scheduler latency, worker
# pick-up (15-36 s measured on Celery), a DAG re-parse per wake, process start and checkpoint load.
ORCHESTRATOR_RESUME_OVERHEAD = timedelta(minutes=2)


class StepTimes:
    """Recent step durations in grid seconds, with a robust expected value and an upper estimate.

    The first step after every (re)start pays warm-up (imports, allocator, caches) and, under replay, that
    cost is multiplied by the replay speed; it is kept apart and used only while nothing else was measured.
    """

    def __init__(self, recent: Iterable[float] = (), *, prior: float | None = None) -> None:
        if prior is not None and not prior > 0:
            raise InvalidInputError(f"estimated_step_seconds={prior} must be positive (or None)")
        self._recent: deque[float] = deque((float(s) for s in recent), maxlen=RECENT_STEPS)
        self._prior = prior
        self._warmup: float | None = None
        self._warming = True

    def add(self, seconds: float) -> None:
        """One step's duration; the first one after a (re)start is only a warm-up sample."""
        value = max(0.0, float(seconds))
        if self._warming:
            self._warming, self._warmup = False, value
        else:
            self._recent.append(value)

    def restart(self) -> None:
        """The next step is a warm-up again (after an in-process wait or a resume)."""
        self._warming = True

    @property
    def known(self) -> bool:
        """Whether an estimate good enough to decide on exists (a prior, or a step past warm-up)."""
        return bool(self._recent) or self._prior is not None

    def _samples(self) -> list[float]:
        if self._recent:
            return list(self._recent)
        if self._prior is not None:
            return [self._prior]
        return [] if self._warmup is None else [self._warmup]

    def expected(self) -> float | None:
        samples = self._samples()
        return float(np.median(samples)) if samples else None

    def upper(self, steps: int) -> float | None:
        """An upper estimate for `steps` more steps: the mean step (slow outliers count in a sum), never below
        1.1 x the median, times `steps`, plus two standard deviations of a sum of `steps` independent steps.

        Not a high quantile per step: over many steps the noise averages out, and a per-step quantile on a
        loaded machine doubled the estimate and made the guard run at once."""
        samples = np.asarray(self._samples(), dtype=float)
        if not samples.size:
            return None
        per_step = max(float(samples.mean()), UPPER_FACTOR * float(np.median(samples)))
        return steps * per_step + UPPER_SIGMAS * float(samples.std()) * math.sqrt(steps)

    def to_list(self) -> list[float]:
        return list(self._recent)


@dataclass(frozen=True)
class WorkEstimate:
    """How much run time a job still needs: `expected`, an `upper` bound for deadlines, and what it rests on."""

    expected: timedelta
    upper: timedelta
    basis: str
    known: bool = True

    @classmethod
    def unknown(cls, why: str) -> WorkEstimate:
        return cls(timedelta(0), timedelta(0), why, known=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected_seconds": self.expected.total_seconds(),
            "upper_seconds": self.upper.total_seconds(),
            "basis": self.basis,
            "known": self.known,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkEstimate:
        return cls(
            timedelta(seconds=float(data["expected_seconds"])),
            timedelta(seconds=float(data["upper_seconds"])),
            str(data["basis"]),
            bool(data["known"]),
        )


def estimate_work(
    *,
    steps_left: int | None,
    step_times: StepTimes,
    expected_duration: timedelta | None,
    worked: timedelta,
) -> WorkEstimate:
    """Remaining work from the steps left x measured step times, else from `expected_duration - worked`."""
    expected = step_times.expected()
    if steps_left is not None and expected is not None:
        left = max(0, steps_left)
        upper = step_times.upper(left)
        assert upper is not None  # samples exist when expected does
        return WorkEstimate(
            timedelta(seconds=left * expected),
            timedelta(seconds=upper),
            f"{left} steps left at {expected:.3g} s per step (median of recent steps)",
        )
    if expected_duration is not None:
        rest = expected_duration - worked
        if rest > timedelta(0):
            return WorkEstimate(
                rest, upper_work(rest), f"expected_duration={expected_duration}, {worked} done"
            )
        return WorkEstimate.unknown(
            f"the job ran {worked}, longer than its expected_duration={expected_duration}"
        )
    if steps_left is None:
        return WorkEstimate.unknown(
            "the data loader has no len(), and neither max_steps nor expected_duration is set"
        )
    return WorkEstimate.unknown("no step has been timed yet")


def upper_work(expected: timedelta) -> timedelta:
    """The guard's upper estimate of work expected to take `expected`; a hold before the work plans for it,
    so the window it picks still starts before the guard's latest start."""
    return expected * UPPER_FACTOR


def resume_margin(resume_overhead: timedelta | str, clock: GridClock) -> timedelta:
    """`resume_overhead` (the wall time a scheduled resume takes; '0s' allowed) as grid time on `clock`:
    the margin every hold and the guard keep before the deadline."""
    return clock.grid_duration(parse_duration(resume_overhead, "resume_overhead", zero_ok=True))


class WarningLog(Protocol):
    """The one logging method the policies use (stdlib, Airflow task and Prefect run loggers all have it)."""

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


def late_run(deadline: pd.Timestamp, now: pd.Timestamp, work: timedelta, log: WarningLog) -> str | None:
    """Why this run is late (its deadline passed, or `work` no longer fits before it), logged; else None.

    A late run runs at once, as the deadline guard of training does: a cleared, retried or backfilled run
    comes after its deadline, and refusing it would starve the task.
    """
    if now + work <= deadline:
        return None
    message = (
        f"late run: {work} of work from {now.isoformat()} does not fit before the deadline "
        f"{deadline.isoformat()}; running at once"
    )
    log.warning("%s", message)
    return message


def plan_by(deadline: pd.Timestamp, first: pd.Timestamp, work: timedelta, margin: timedelta) -> pd.Timestamp:
    """The finish-by time a hold plans to: the deadline less the time a wake-up takes (scheduler latency,
    worker pick-up), but never so early that `work` no longer fits from `first`, the earliest it may start
    (now, or a later earliest_start)."""
    return max(first + pd.Timedelta(work), deadline - pd.Timedelta(margin))


class DeadlineGuard:
    """Apply a finish-by `deadline` to every decision; one per job, carried across pauses with `to_state()`.

    `resume_overhead` is grid time (an orchestrator's wall overhead converted by its clock).
    """

    def __init__(
        self,
        deadline: pd.Timestamp | None,
        *,
        resume_overhead: timedelta = timedelta(0),
        run_from: pd.Timestamp | None = None,
        run_to_finish: bool = False,
    ) -> None:
        if resume_overhead < timedelta(0):
            raise InvalidInputError(f"resume_overhead={resume_overhead} must not be negative")
        self.deadline = deadline
        self.resume_overhead = resume_overhead
        self.run_from = run_from  # a hold was cut at this moment: from here on the job runs to the end
        self.run_to_finish = run_to_finish
        self._said: Decision | None = None

    def latest_start(self, now: pd.Timestamp, work: WorkEstimate) -> pd.Timestamp | None:
        """The last moment a held job may (re)start and still finish by the deadline, margin included."""
        if self.deadline is None:
            return None
        if not work.known:
            return now  # it may need all the time left: no moment later than now is safe
        return self.deadline - work.upper - self.resume_overhead

    def strategy_work(self, work: WorkEstimate) -> timedelta:
        """What a strategy is told: the upper estimate and the overhead, so its own deadline logic agrees."""
        return work.upper + self.resume_overhead if work.known else work.expected

    def ask(self, strategy: Strategy | None, now: pd.Timestamp, work: WorkEstimate) -> Decision:
        """The strategy's decision with the deadline applied; the strategy is not asked once the guard ran it."""
        if self._said is not None:
            return self._said
        if self.run_to_finish:
            return self._run("deadline guard: running to the end (it said so earlier)")
        if self.deadline is not None and now >= self.deadline:
            late = _short(now - self.deadline)
            return self._run(
                f"deadline guard: the deadline {self.deadline.isoformat()} passed {late} ago; running at once (late run)"
            )
        latest = self.latest_start(now, work)
        if latest is not None and (now >= latest or (self.run_from is not None and now >= self.run_from)):
            return self._run(self._run_reason(work, latest))
        if strategy is None:
            return Decision.run("no strategy: run")
        decision = strategy.decide(now, remaining_work=self.strategy_work(work), deadline=self.deadline)
        return self.apply(decision, now, work)

    def apply(self, decision: Decision, now: pd.Timestamp, work: WorkEstimate) -> Decision:
        """Cut a hold that would end after the latest start; a hold that starts too late becomes a run."""
        if decision.action is Action.RUN or self.deadline is None:
            return decision
        assert decision.until is not None
        latest = self.latest_start(now, work)
        assert latest is not None
        facts: dict[str, Any] = {
            "intensity": decision.intensity,
            "source": decision.source,
            "fallback": decision.fallback,
        }
        if now >= latest:
            return self._run(
                f"{self._run_reason(work, latest)} (the strategy said: {decision.reason})", **facts
            )
        if decision.until > latest:
            self.run_from = latest if self.run_from is None else min(self.run_from, latest)
            return Decision(
                decision.action,
                f"{decision.reason}; held only until {latest.isoformat()} to meet the deadline "
                f"{self.deadline.isoformat()} ({_short(work.upper)} of work at most, {_short(self.resume_overhead)} to resume)",
                until=latest,
                **facts,
            )
        return decision

    def _run_reason(self, work: WorkEstimate, latest: pd.Timestamp) -> str:
        assert self.deadline is not None
        if not work.known:
            return (
                f"deadline guard: the remaining work is unknown ({work.basis}); assuming it needs all the time "
                f"to the deadline {self.deadline.isoformat()}, running now to the end"
            )
        return (
            f"deadline guard: {_short(work.expected)} of work left ({_short(work.upper)} at most, {work.basis}) "
            f"and {_short(self.resume_overhead)} to resume; the latest start for the deadline {self.deadline.isoformat()} "
            f"is {latest.isoformat()}: running now to the end"
        )

    def _run(self, reason: str, **facts: Any) -> Decision:
        self.run_to_finish = True
        self._said = Decision.run(reason, **facts)
        log.warning("%s", reason)
        return self._said

    def to_state(self) -> dict[str, Any]:
        """JSON primitives, for checkpoints and deferral kwargs."""
        return {
            "run_from": None if self.run_from is None else self.run_from.isoformat(),
            "run_to_finish": self.run_to_finish,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """Take back what `to_state()` gave (a guard that said "run" keeps saying it after a resume)."""
        if not state:
            return
        if state.get("run_from"):
            self.run_from = parse_utc(str(state["run_from"]), "run_from")
        self.run_to_finish = self.run_to_finish or bool(state.get("run_to_finish"))


def _short(span: timedelta) -> timedelta:
    """A span to the second, for messages people read."""
    return timedelta(seconds=round(pd.Timedelta(span).total_seconds()))
