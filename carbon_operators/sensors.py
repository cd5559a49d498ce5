"""`CarbonIntensitySensor`: hold a task until its grid zone is green enough, or until its deadline.

Three ways to wait, as for any Airflow sensor: `mode="poke"` (holds a worker slot), `mode="reschedule"`
(frees it between pokes) and `deferrable=True` (waits in the triggerer: no worker at all). The reading that
released the task (or the deadline/outage that did) is returned to XCom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, conf

from carbon_operators.links import CarbonIntensityLink
from carbon_operators.policy import (
    PERMANENT_ERRORS,
    OnDeadline,
    OnOutage,
    deferral_timeout,
    failing_bad_input,
    on_deadline_reached,
    on_outage,
    parse_choice,
)
from carbon_operators.target import CarbonTarget, resolve_target
from carbon_operators.triggers import DEADLINE, ERROR, GREEN, CarbonIntensityTrigger, adopt_replay_of
from carbon_sensors.errors import CarbonAwareError, InvalidInputError, NoDataError
from carbon_sensors.options import day_span, intensity_limit, number


def percentile_threshold(target: CarbonTarget, percentile: float, days: float) -> float:
    """The `percentile`-th percentile of the zone's last `days` of history, in gCO2eq/kWh.

    No values at all is missing data (the outage policy applies), never a NaN threshold that nothing passes.
    """
    now = target.clock.now()
    history = target.source.history(target.zone, now - timedelta(days=days), now).values.dropna()
    if history.empty:
        raise NoDataError(f"{target.zone}: no history in the {days:g} days before {now.isoformat()}")
    return float(history.quantile(percentile / 100.0))


class CarbonIntensitySensor(BaseSensorOperator):
    """Succeed when `zone`'s carbon intensity is at or below a threshold.

    Give one threshold: `max_intensity`, or `percentile` of the recent history.

    :param zone: the grid zone ('DE'); default: the connection's zone.
    :param max_intensity: succeed at or below this many gCO2eq/kWh.
    :param percentile: succeed at or below this percentile (0-100] of the last `history_days` days
        (e.g. 30: greener than 70% of recent hours).
    :param history_days: days of history the percentile is taken over (default 7).
    :param carbon_conn_id: the `carbon_intensity` connection naming the source and its key; default: recorded
        traces (offline).
    :param deadline: when waiting ends (aware ISO or datetime, grid time); default: the run's data interval
        end (else its run-after time, else now) plus `deadline_allowance`.
    :param deadline_allowance: how long after that the waiting may last (default 12 h).
    :param on_deadline: at the deadline, 'run' succeeds (the stage runs, late carbon-wise but on time), 'fail'
        fails and 'skip' skips.
    :param on_outage: without carbon data, 'open' succeeds (logged, reported) and 'closed' fails.
    :param deferrable: wait in the triggerer (no worker slot) instead of poking on a worker; default: the
        `[operators] default_deferrable` setting.
    :param poke_interval: seconds (or a timedelta) between checks (default 300).
    :param timeout: seconds (or a timedelta) after which the wait fails (or skips, with `soft_fail`) as any
        Airflow sensor's does; default: none, the deadline ends the wait (Airflow's 7-day default would end a
        later deadline's wait with a sensor timeout instead of `on_deadline`).
    """

    template_fields: Sequence[str] = (
        "zone", "max_intensity", "percentile", "history_days", "deadline", "carbon_conn_id",
    )  # fmt: skip
    operator_extra_links = (CarbonIntensityLink(),)
    ui_color = "#c8e6c9"

    def __init__(
        self,
        *,
        zone: str | None = None,
        max_intensity: float | str | None = None,
        percentile: float | str | None = None,
        history_days: float | str = 7.0,
        carbon_conn_id: str | None = None,
        deadline: datetime | str | None = None,
        deadline_allowance: timedelta | str | None = None,
        on_deadline: str = OnDeadline.RUN,
        on_outage: str = OnOutage.OPEN,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: timedelta | float = 300.0,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if timeout is None:
            self.timeout = math.inf  # the poke at the deadline ends the wait, by the on_deadline policy
        self.zone = zone
        self.max_intensity = max_intensity
        self.percentile = percentile
        self.history_days = history_days
        self.carbon_conn_id = carbon_conn_id
        self.deadline = deadline
        self.deadline_allowance = deadline_allowance
        self.on_deadline = on_deadline
        self.on_outage = on_outage
        self.deferrable = deferrable
        self._target: CarbonTarget | None = None
        self._threshold: float | None = None  # max_intensity, or the percentile's value once history answered
        self._percentile_of: tuple[float, float] | None = None  # (percentile, history_days), checked

    # --- resolution ------------------------------------------------------------------------------------
    def _resolve(self, context: Context) -> CarbonTarget:
        """Check the (rendered) settings and resolve the target; bad input fails the task, never retried."""
        if self._target is None:
            with failing_bad_input(self.task_id):
                parse_choice(OnDeadline, self.on_deadline, "on_deadline")
                parse_choice(OnOutage, self.on_outage, "on_outage")
                self._check_threshold()
                self._target = resolve_target(context, self)
        return self._target

    def _check_threshold(self) -> None:
        """Parse the threshold settings at execute time: templates render them to strings."""
        if (self.max_intensity is None) == (self.percentile is None):
            raise InvalidInputError(
                "give exactly one threshold: max_intensity (gCO2eq/kWh) or percentile (0-100 of history)"
            )
        if self.max_intensity is not None:
            self._threshold = intensity_limit(self.max_intensity, "max_intensity")
            return
        percentile = number(self.percentile, "percentile")
        if not 0 < percentile <= 100:
            raise InvalidInputError(
                f"percentile={self.percentile!r} must be in (0, 100]; give e.g. percentile=30"
            )
        self._percentile_of = (percentile, day_span(self.history_days, "history_days"))

    def _threshold_for(self, target: CarbonTarget) -> float:
        """The threshold; a percentile's history is read once, inside the caller's outage handling."""
        if self._threshold is None:
            assert self._percentile_of is not None  # set by _check_threshold when max_intensity is not
            self._threshold = percentile_threshold(target, *self._percentile_of)
        return self._threshold

    def _report(
        self, target: CarbonTarget, threshold: float | None, status: str, **facts: Any
    ) -> dict[str, Any]:
        return {
            "status": status,
            "zone": target.zone,
            "threshold": threshold,
            "deadline": target.deadline.isoformat(),
            "replay": target.clock.replaying,
            **facts,
        }

    # --- waiting ---------------------------------------------------------------------------------------
    def poke(self, context: Context) -> PokeReturnValue:
        target = self._resolve(context)
        if target.clock.now() >= target.deadline:
            message = f"{target.zone}: deadline {target.deadline.isoformat()} reached before a green moment"
            on_deadline_reached(OnDeadline(self.on_deadline), message, self.log)
            return PokeReturnValue(True, self._report(target, self._threshold, DEADLINE, message=message))
        with failing_bad_input(self.task_id):
            try:
                threshold = self._threshold_for(target)
                reading = target.source.latest(target.zone)
            except PERMANENT_ERRORS:
                raise
            except CarbonAwareError as exc:
                on_outage(OnOutage(self.on_outage), str(exc), self.log)
                return PokeReturnValue(True, self._report(target, self._threshold, ERROR, message=str(exc)))
        self.log.info("%s: %.1f gCO2eq/kWh (threshold %.1f)", target.zone, reading.value, threshold)
        if reading.value <= threshold:
            return PokeReturnValue(True, self._report(target, threshold, GREEN, reading=reading.to_dict()))
        return PokeReturnValue(False)

    def execute(self, context: Context) -> Any:
        target = self._resolve(context)
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        wall_deadline = target.wall_deadline
        self.defer(
            trigger=CarbonIntensityTrigger(
                zone=target.zone,
                max_intensity=self._threshold_for(target),  # read by the first poke
                deadline=wall_deadline.isoformat(),
                poll_seconds=self.poke_interval,
                carbon_conn_id=self.carbon_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=min(self.timeout, deferral_timeout(wall_deadline).total_seconds())),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger: green -> done; deadline -> deadline policy; error -> outage policy."""
        adopt_replay_of(event)  # the deferring process's replay clock, not a fresh one
        target = self._resolve(context)
        threshold = (event or {}).get("threshold", self._threshold)  # the trigger's: no history read again
        status = (event or {}).get("status")
        message = str((event or {}).get("message", ""))
        if status == GREEN:
            return self._report(target, threshold, GREEN, reading=(event or {}).get("reading"))
        if status == DEADLINE:
            on_deadline_reached(OnDeadline(self.on_deadline), f"{target.zone}: {message}", self.log)
            return self._report(target, threshold, DEADLINE, message=message)
        if status == ERROR:
            on_outage(OnOutage(self.on_outage), message, self.log)
            return self._report(target, threshold, ERROR, message=message)
        raise InvalidInputError(
            f"unexpected trigger event {event!r}; expected a status of green, deadline or error"
        )
