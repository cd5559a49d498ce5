"""Hold work until a low-carbon window: short waits in-process, long waits as a run scheduled for the window.

Why two ways: sleeping keeps a worker (and any infrastructure it started) busy for nothing, so a wait longer
than `max_in_process_wait` schedules a new run of the current deployment at the window start and lets this
run end as "Rescheduled" (a completed, non-failed state). Without a deployment there is nothing to reschedule,
so the wait happens in-process. Deadlines are sacred: no wait goes past the finish-by time, and missing carbon
data gives an explicit, logged, reported fallback (run now, or fail if asked).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, cast

import anyio.to_thread
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError

from carbon_flows import events
from carbon_flows.rescheduling import (
    current_deployment_run,
    reschedule_current_run,
    rescheduled_state,
    run_tags,
    tag_times,
)
from carbon_flows.sources import SourceSpec, clock_of, resolve_source
from carbon_sensors.deadline import late_run, plan_by, resume_margin
from carbon_sensors.errors import AuthenticationError, CarbonAwareError, InvalidInputError, UnknownZoneError
from carbon_sensors.forecast.combine import assemble_forecast, horizon_to
from carbon_sensors.planner import plan_window
from carbon_sensors.timeutil import parse_duration, parse_utc, utcnow
from carbon_sensors.worth import (
    DEFAULT_MAX_REPLANS,
    DEFAULT_MIN_SAVINGS,
    check_max_replans,
    check_min_savings,
    not_worth_holding,
)

DEADLINE_TAG = "carbon-aware:deadline:"
# + "<zone>/<duration>s:<n>": how many times that wait rescheduled the runs before this one
HOLDS_TAG = "carbon-aware:holds:"
OnOutage = Literal["open", "closed"]  # the outage option of every operator and flow
# A planned start this close to now is now: the planner works in float nanoseconds, so a plan that starts
# "now" can come back a few hundred nanoseconds later, and a wait that short is not a wait.
START_TOLERANCE = pd.Timedelta(seconds=1)
# Wall time from a rescheduled run's start time to its first step: worker poll, process start, flow load.
PREFECT_RESUME_OVERHEAD = "30s"
# Errors no fallback can fix (bad input or configuration): always raised, never turned into "run now".
BAD_SETUP = (InvalidInputError, UnknownZoneError, AuthenticationError)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class WindowOutcome:
    """What the wait decided: go on now (`run`, maybe after an in-process wait) or `rescheduled` for later.

    Grid times (`window_start`, `deadline`) are the carbon data's clock, which differs from the wall clock
    only under replay; `scheduled_for` is wall time.
    """

    action: Literal["run", "rescheduled"]
    zone: str
    reason: str
    deadline: pd.Timestamp
    window_start: pd.Timestamp | None = None
    window_end: pd.Timestamp | None = None
    waited_seconds: float = 0.0
    fallback: bool = False
    plan: dict[str, Any] | None = None
    next_flow_run_id: str | None = None
    scheduled_for: pd.Timestamp | None = None
    intensity_now: float | None = field(default=None)
    replans: int = 0  # holds after the first, over the runs this one's chain rescheduled (as on Airflow)

    @property
    def rescheduled(self) -> bool:
        return self.action == "rescheduled"

    def final_state(self) -> State[Any]:
        """Return this from a flow that was rescheduled: it ends completed, named 'Rescheduled'."""
        return rescheduled_state(self.reason)

    def to_dict(self) -> dict[str, Any]:
        def iso(t: pd.Timestamp | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "action": self.action,
            "zone": self.zone,
            "reason": self.reason,
            "deadline": iso(self.deadline),
            "window_start": iso(self.window_start),
            "window_end": iso(self.window_end),
            "waited_seconds": self.waited_seconds,
            "fallback": self.fallback,
            "plan": self.plan,
            "next_flow_run_id": self.next_flow_run_id,
            "scheduled_for": iso(self.scheduled_for),
            "intensity_now": self.intensity_now,
            "replans": self.replans,
        }


def await_low_carbon(
    zone: str,
    *,
    duration: str | timedelta = "1h",
    deadline: datetime | str | None = None,
    within: str | timedelta | None = None,
    earliest_start: datetime | str | None = None,
    source: SourceSpec = "trace",
    max_intensity: float | None = None,
    max_in_process_wait: str | timedelta = "5min",
    reschedule: bool = True,
    on_outage: OnOutage = "open",
    min_savings: float = DEFAULT_MIN_SAVINGS,
    max_replans: int = DEFAULT_MAX_REPLANS,
    resume_overhead: str | timedelta = PREFECT_RESUME_OVERHEAD,
    sleep: Callable[[float], None] = time.sleep,
) -> WindowOutcome:
    """Return once a low-carbon window for `duration` of work, finishing by the deadline, has begun.

    Args:
        zone: the grid zone (e.g. "DE", "GB"), as the source names it.
        duration: how long the held work runs ('1h', the default): the window's length.
        deadline: finish-by time (aware datetime or ISO string, grid time); a run rescheduled by an earlier
            wait keeps that wait's deadline. A deadline already past runs at once, logged as a late run.
        within: the deadline as a span from now instead (default 24 h); not both.
        earliest_start: no window starts before this (aware datetime or ISO string, grid time), as on the
            Airflow window; the work must still fit between it and the deadline, or it is an error.
        source: where the carbon data comes from: "trace" (recorded, the offline default, "trace:<dataset>"
            for another), a provider name configured from the environment ("uk", "electricitymaps", "watttime"),
            a credentials block ("watttime-credentials/<name>") or an `IntensitySource`.
        max_intensity: a grid at or below this (gCO2eq/kWh) runs at once, without a forecast.
        max_in_process_wait: a wait up to this long sleeps in-process ('5min'; '0': always reschedule); a
            longer one in a deployment run schedules a new run for the window and this run ends "Rescheduled".
        reschedule: False always waits in-process (never schedules a new run).
        on_outage: without carbon data, "open" runs now (logged, a reported fallback) and "closed" raises,
            as on the Airflow operators.
        min_savings: the least expected saving, in percent against running now, worth a hold (default 1,
            see `carbon_sensors.worth`); a smaller one runs now and says so.
        max_replans: how many times a run woken at its window may hold again (default 3, as on Airflow);
            after that it runs at the window it woke at. Counted per wait (zone and duration) in the tags of
            the runs it rescheduled; a wait that cannot reschedule holds once and counts nothing.
        resume_overhead: wall time from a rescheduled run's start time to the work running (worker poll,
            process start, flow load; default 30 s, '0s' for none). A wait that can reschedule plans its
            window to end this much before the deadline, or as early as the work allows when the slack is
            shorter (warned: under a fast replay 30 s is hours of grid time).
        sleep: how an in-process wait sleeps (tests pass a recorder).
    """
    log = run_logger()
    _check_policy(on_outage, min_savings, max_replans)
    work = parse_duration(duration, "duration")
    in_process_limit = timedelta(0) if max_in_process_wait in (0, "0") else _limit(max_in_process_wait)
    intensity_source = resolve_source(source)
    clock = clock_of(intensity_source)
    now = clock.now()
    finish_by = resolve_deadline(deadline, within, now)
    # Only a wait that can reschedule has a wake-up to allow for, and a chain of runs to count holds over.
    can_reschedule = reschedule and current_deployment_run() is not None
    hold_key = f"{zone}/{int(work.total_seconds())}s"
    holds = _inherited_holds(hold_key) if can_reschedule else 0
    overhead = resume_margin(resume_overhead, clock)  # checked even where no reschedule can happen
    margin = overhead if can_reschedule else timedelta(0)
    first = max(now, parse_utc(earliest_start, "earliest_start")) if earliest_start else now

    def outcome(
        reason: str, *, held: bool = False, action: Literal["run", "rescheduled"] = "run", **facts: Any
    ) -> WindowOutcome:
        replans = holds if held else max(0, holds - 1)  # a woken run that holds again re-plans once more
        result = WindowOutcome(
            action=action,
            zone=zone,
            reason=reason,
            deadline=finish_by,
            replans=replans,
            **facts,
        )
        log.info("carbon window %s: %s", zone, reason)
        event = events.RUN_RESCHEDULED if result.rescheduled else events.WINDOW_OPENED
        events.emit_carbon_event(event, zone, result.to_dict())
        return result

    if late := late_run(finish_by, now, work, log):
        return outcome(late)
    if now + work >= finish_by:
        return outcome(f"no slack: {work} of work must start now to finish by {finish_by.isoformat()}")
    if holds > max_replans:  # woken at its window after max_replans re-plans: this window runs
        return outcome(
            f"woken at the window after {holds - 1} re-plan(s), max_replans={max_replans}: running now",
            window_start=now,
            window_end=now + work,
        )
    plan_end = plan_by(finish_by, first, work, margin)
    if plan_end > finish_by - margin:  # plan_by's floor: the work no longer fits before the margin
        log.warning(
            "resume_overhead=%s is %s of grid time: a run rescheduled for a later window would finish after "
            "the deadline %s, so only the window from the earliest start (now or earliest_start) fits",
            resume_overhead, margin, finish_by.isoformat(),
        )  # fmt: skip
    intensity_now: float | None = None
    try:
        if max_intensity is not None:
            intensity_now = intensity_source.latest(zone).value
            if intensity_now <= max_intensity:
                return outcome(
                    f"grid is green: {intensity_now:.0f} <= max_intensity {max_intensity:.0f} gCO2eq/kWh",
                    intensity_now=intensity_now,
                )
        forecast = assemble_forecast(intensity_source, zone, now, horizon_to(finish_by, now))
        plan = plan_window(forecast, duration=work, deadline=plan_end, earliest_start=first)
    except CarbonAwareError as exc:
        if isinstance(exc, BAD_SETUP) or on_outage == "closed":
            raise
        log.warning("carbon data unavailable for %s: %s; on_outage='open': running now", zone, exc)
        return outcome(
            f"no carbon data ({exc}); fallback: run now", fallback=True, intensity_now=intensity_now
        )
    planned: dict[str, Any] = {
        "plan": {**plan.to_dict(), "min_savings": min_savings},
        "window_start": plan.start,
        "window_end": plan.end,
    }
    if plan.start <= now + START_TOLERANCE:
        return outcome(f"now is the best window: {plan.reason}", fallback=plan.fallback, **planned)
    if small := not_worth_holding(plan, min_savings):
        return outcome(small, **planned)
    start_wall = clock.to_wall(plan.start)
    wait = max(0.0, (start_wall - utcnow()).total_seconds())
    if wait > in_process_limit.total_seconds() and can_reschedule:
        tags = [f"{DEADLINE_TAG}{finish_by.isoformat()}", f"{HOLDS_TAG}{hold_key}:{holds + 1}"]
        next_run = reschedule_current_run(start_wall, extra_tags=tags)  # carries the deadline and holds
        return outcome(
            f"waiting {timedelta(seconds=round(wait))} for the window at {plan.start.isoformat()} "
            f"({plan.reason}); flow run {next_run.id} scheduled for {start_wall.isoformat()}",
            held=True,
            action="rescheduled",
            fallback=plan.fallback,
            next_flow_run_id=str(next_run.id),
            scheduled_for=start_wall,
            **planned,
        )
    if wait > in_process_limit.total_seconds():
        log.info(
            "no deployment to reschedule: waiting %.0f s in process for %s", wait, plan.start.isoformat()
        )
    else:
        log.info("waiting %.1f s in process for the window at %s", wait, plan.start.isoformat())
    sleep(wait)
    return outcome(
        f"window reached after waiting {wait:.1f} s: {plan.reason}", held=True, waited_seconds=wait, **planned
    )


def _check_policy(on_outage: str, min_savings: float, max_replans: int) -> None:
    """The wait's policy options, checked before any data is fetched (the Airflow window checks the same)."""
    if on_outage not in ("open", "closed"):
        raise InvalidInputError(
            f"on_outage={on_outage!r} is not valid; use 'open' (run now) or 'closed' (fail)"
        )
    check_min_savings(min_savings)
    check_max_replans(max_replans)


wait_for_low_carbon = task(name="wait-for-low-carbon", cache_policy=NO_CACHE)(await_low_carbon)


def carbon_window(zone: str, **options: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Put any flow or task function behind a low-carbon window (`options` as for `await_low_carbon`).

    On a flow, a long wait reschedules the deployment and the flow returns the 'Rescheduled' state without
    running its body. Inside a task a run cannot be ended early, so a task waits in-process (never past the
    deadline). Apply it under `@flow`/`@task`: `@task` then `@carbon_window("DE", duration="30min")`.
    """

    def wait_here() -> WindowOutcome:
        in_task = TaskRunContext.get() is not None
        allowed = options.get("reschedule", True) and not in_task and FlowRunContext.get() is not None
        return await_low_carbon(zone, **{**options, "reschedule": allowed})

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_after_window_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                outcome = await anyio.to_thread.run_sync(wait_here)
                return outcome.final_state() if outcome.rescheduled else await fn(*args, **kwargs)

            return cast(Callable[P, R], run_after_window_async)

        @functools.wraps(fn)
        def run_after_window(*args: P.args, **kwargs: P.kwargs) -> Any:
            outcome = wait_here()
            return outcome.final_state() if outcome.rescheduled else fn(*args, **kwargs)

        return cast(Callable[P, R], run_after_window)

    return decorate


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a flow or task run (shown in the UI), else this module's logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _limit(value: str | timedelta) -> timedelta:
    return parse_duration(value, "max_in_process_wait")


def resolve_deadline(
    deadline: datetime | str | None, within: str | timedelta | None, now: pd.Timestamp
) -> pd.Timestamp:
    """The finish-by time; a run rescheduled by an earlier wait keeps that wait's deadline (never drifts).

    A deadline already past is not an error: a late (retried, rescheduled, backfilled) run runs at once.
    """
    if deadline is not None and within is not None:
        raise InvalidInputError("pass either deadline= or within=, not both")
    if deadline is not None and deadline != "":
        finish_by = parse_utc(deadline, "deadline")
    else:
        finish_by = now + parse_duration(within or "24h", "within")
        finish_by = min([finish_by, *_inherited_deadlines()])
    return finish_by


def _inherited_deadlines() -> list[pd.Timestamp]:
    return tag_times(DEADLINE_TAG, "deadline tag")


def _inherited_holds(key: str) -> int:
    """How many times this wait (`key`: zone and duration) rescheduled the runs before this one.

    Tags carry over to each rescheduled run, so the largest count is the latest; another wait in the same
    flow counts under its own key.
    """
    prefix = f"{HOLDS_TAG}{key}:"
    counts = [t[len(prefix) :] for t in run_tags() if t.startswith(prefix)]
    return max((int(c) for c in counts if c.isdecimal()), default=0)
