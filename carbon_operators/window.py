"""Forecast-window hold: plan the greenest window for a downstream stage, then wait for it in the triggerer.

Planned once on the worker; the wait is a `DateTimeTrigger` to the window start (no polling, no worker
slot). On wake the forecast is asked again: if it moved and a later window is now clearly greener, the hold
waits again (a bounded number of times); the plan never ends after the deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from airflow.sdk import BaseOperator, Context, XComArg

from carbon_operators.links import CarbonIntensityLink
from carbon_operators.policy import (
    PERMANENT_ERRORS,
    OnOutage,
    deferral_timeout,
    failing_bad_input,
    on_outage,
    parse_choice,
)
from carbon_operators.target import CarbonTarget, resolve_target
from carbon_operators.triggers import ResumeAtTrigger, adopt_replay_of
from carbon_sensors.deadline import ORCHESTRATOR_RESUME_OVERHEAD, late_run, plan_by, resume_margin
from carbon_sensors.errors import CarbonAwareError, InvalidInputError
from carbon_sensors.forecast.combine import assemble_forecast, horizon_to
from carbon_sensors.planner import Plan, plan_window, plan_zones
from carbon_sensors.timeutil import parse_duration, parse_utc
from carbon_sensors.worth import (
    DEFAULT_MAX_REPLANS,
    DEFAULT_MIN_SAVINGS,
    check_max_replans,
    check_min_savings,
    not_worth_holding,
)


class _Setting(NamedTuple):
    """What a run of the window works with, checked once: the target, the work's length, the wake-up margin."""

    target: CarbonTarget
    duration: timedelta
    margin: timedelta  # resume_overhead as grid time


class CarbonWindowOperator(BaseOperator):
    """Hold until the lowest-carbon window of `duration` that ends by the deadline, in one or several zones.

    Returns the plan (zone, start, end, expected and run-now intensity, savings) to XCom, so the held
    stage can read which zone was chosen.

    :param duration: how long the held stage runs ('2h'): the window's length.
    :param zone: a zone ('DE'), a list or a comma-separated string of zones (the greenest window of any wins);
        default: the connection's zone.
    :param carbon_conn_id: the `carbon_intensity` connection naming the source and its key; default: recorded
        traces (offline).
    :param deadline: finish-by time of the held stage (aware ISO or datetime, grid time); default: the run's
        data interval end (else its run-after time, else now) plus `deadline_allowance`.
    :param deadline_allowance: how long after that the stage must finish (default 12 h).
    :param earliest_start: no window starts before this (aware ISO or datetime).
    :param min_savings: the least expected saving, in percent against running now, worth a hold (default 1,
        see `carbon_sensors.worth`); a smaller one runs at once and says so. On wake, the hold waits again
        only for a later window that saves at least this much.
    :param max_replans: how many times a hold woken at its window may hold again (default 3); after that the
        task runs at the window it woke at.
    :param on_outage: without carbon data, 'open' releases at once (reported as an outage) and 'closed' fails.
    :param resume_overhead: wall time from the window's start to the held task running (triggerer, scheduler,
        worker pick-up; default 2 min, '0s' for none); the window is planned to end this much before the
        deadline, or as early as the work allows when the slack is shorter.
    """

    template_fields: Sequence[str] = ("zone", "duration", "deadline", "earliest_start", "carbon_conn_id")
    operator_extra_links = (CarbonIntensityLink(),)
    ui_color = "#a5d6a7"

    def __init__(
        self,
        *,
        duration: timedelta | str,
        zone: str | Sequence[str] | None = None,
        carbon_conn_id: str | None = None,
        deadline: datetime | str | None = None,
        deadline_allowance: timedelta | str | None = None,
        earliest_start: datetime | str | None = None,
        min_savings: float = DEFAULT_MIN_SAVINGS,
        max_replans: int = DEFAULT_MAX_REPLANS,
        on_outage: str = OnOutage.OPEN,
        resume_overhead: timedelta | str = ORCHESTRATOR_RESUME_OVERHEAD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.zone = zone
        self.duration = duration
        self.carbon_conn_id = carbon_conn_id
        self.deadline = deadline
        self.deadline_allowance = deadline_allowance
        self.earliest_start = earliest_start
        self.min_savings = min_savings
        self.max_replans = max_replans
        self.on_outage = on_outage
        self.resume_overhead = resume_overhead

    def _setting(self, context: Context) -> _Setting:
        with failing_bad_input(self.task_id):
            parse_choice(OnOutage, self.on_outage, "on_outage")
            check_min_savings(self.min_savings)
            check_max_replans(self.max_replans)
            target = resolve_target(context, self)
            margin = resume_margin(self.resume_overhead, target.clock)
            return _Setting(target, parse_duration(self.duration, "duration"), margin)

    def _plan(self, setting: _Setting) -> Plan | None:
        """The best window from now; None (after the outage policy) when no forecast can be had."""
        target, duration = setting.target, setting.duration
        now = target.clock.now()
        # never a window that began before now (the forecast starts at the top of the hour)
        earliest = max(now, parse_utc(self.earliest_start, "earliest_start")) if self.earliest_start else now
        finish_by = plan_by(target.deadline, earliest, duration, setting.margin)
        with failing_bad_input(self.task_id):
            try:
                forecasts = {
                    zone: assemble_forecast(target.source, zone, now, horizon_to(target.deadline, now))
                    for zone in target.zones
                }
            except PERMANENT_ERRORS:
                raise
            except CarbonAwareError as exc:
                on_outage(OnOutage(self.on_outage), str(exc), self.log)
                return None
            if len(forecasts) == 1:
                return plan_window(
                    forecasts[target.zone],
                    duration=duration,
                    deadline=finish_by,
                    earliest_start=earliest,
                )
            return plan_zones(forecasts, duration=duration, deadline=finish_by, earliest_start=earliest)

    def execute(self, context: Context) -> dict[str, Any]:
        setting = self._setting(context)
        target = setting.target
        late = late_run(target.deadline, target.clock.now(), setting.duration, self.log)
        if late is not None:
            return self._released(target, {"zone": target.zone, "fallback": True, "reason": late}, replans=0)
        return self._hold_or_release(target, self._plan(setting), replans=0)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Woken at the window start: re-plan; hold again only if the forecast moved to a clearly better time."""
        adopt_replay_of(event)  # the deferring process's replay clock, not a fresh one
        state = (event or {}).get("state") or {}
        plan, replans = state.get("plan"), int(state.get("replans", 0))
        setting = self._setting(context)
        target = setting.target
        now = target.clock.now()
        if now + setting.duration > target.deadline or replans >= self.max_replans:
            return self._released(target, plan, replans)
        fresh = self._plan(setting)
        if fresh is not None and fresh.start > now and not_worth_holding(fresh, self.min_savings) is None:
            self.log.info("the forecast moved: %s; holding again", fresh.reason)
            return self._hold_or_release(target, fresh, replans=replans + 1)
        if fresh is None or fresh.start > now:  # no forecast, or a later window saving too little
            return self._released(target, plan, replans)  # the window waited for is the one that runs
        return self._released(target, fresh.to_dict(), replans)

    def _hold_or_release(self, target: CarbonTarget, plan: Plan | None, *, replans: int) -> dict[str, Any]:
        if plan is None or plan.start <= target.clock.now():
            return self._released(target, None if plan is None else plan.to_dict(), replans)
        if small := not_worth_holding(plan, self.min_savings):
            self.log.info("not holding: %s", small)
            return self._released(target, {**plan.to_dict(), "reason": small}, replans)
        wall_start = target.clock.to_wall(plan.start)
        self.log.info(
            "holding for the window %s to %s in %s (wall %s): %s vs %s gCO2eq/kWh now, %s%% less",
            plan.start.isoformat(),
            plan.end.isoformat(),
            plan.zone,
            wall_start.isoformat(),
            plan.expected_intensity,
            plan.run_now_intensity,
            plan.savings_pct,
        )
        self.defer(
            trigger=ResumeAtTrigger(
                wall_start.to_pydatetime(), state={"plan": plan.to_dict(), "replans": replans}
            ),
            method_name="execute_complete",
            timeout=deferral_timeout(target.wall_deadline),
        )

    def _released(self, target: CarbonTarget, plan: dict[str, Any] | None, replans: int) -> dict[str, Any]:
        status = "outage" if plan is None else "released"
        return {
            "status": status,
            **(plan or {"zone": target.zone, "fallback": True, "reason": "no forecast: ran at once"}),
            "replans": replans,
            "min_savings": self.min_savings,
            "released_at": target.clock.now().isoformat(),
            "deadline": target.deadline.isoformat(),
            "replay": target.clock.replaying,
        }


def behind_carbon_window(task: BaseOperator | XComArg, **window: Any) -> CarbonWindowOperator:
    """Put an existing task behind a forecast window in one line: `behind_carbon_window(heavy, zone="DE")`.

    `task` is an operator or a `@task` call's result. The window's duration defaults to the task's
    `execution_timeout`; the hold becomes the task's upstream, with task id `<task_id>_carbon_window`.
    """
    if isinstance(task, XComArg):
        operators = [op for op, _ in task.iter_references()]
        if len(operators) != 1 or not isinstance(operators[0], BaseOperator):
            raise InvalidInputError(f"{task!r} does not come from one task; pass the operator itself")
        task = operators[0]
    if "duration" not in window:
        if task.execution_timeout is None:
            raise InvalidInputError(
                f"task {task.task_id!r} has no execution_timeout; pass duration='2h' (how long it runs)"
            )
        window["duration"] = task.execution_timeout
    hold = CarbonWindowOperator(task_id=f"{task.task_id}_carbon_window", dag=task.dag, **window)
    hold >> task
    return hold
