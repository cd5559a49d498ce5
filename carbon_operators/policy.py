"""Deadlines and what to do when they come or when the carbon data is missing: explicit, logged, reported.

A deadline is a finish-by time in grid time (see `carbon_sensors.replay.GridClock`): given explicitly, or derived from the run (its data
interval end, else its run-after time, plus an allowance). Deadlines are never waited past.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import pandas as pd
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

from carbon_sensors.deadline import WarningLog
from carbon_sensors.errors import AuthenticationError, InvalidInputError
from carbon_sensors.replay import GridClock
from carbon_sensors.timeutil import parse_duration, parse_utc, require_utc, utcnow

DEFAULT_ALLOWANCE = timedelta(hours=12)
DEFERRAL_MARGIN = pd.Timedelta(minutes=5)

# Errors no retry or later poll can fix (bad zone, refused key, missing connection): fail, never fail open.
PERMANENT_ERRORS = (InvalidInputError, LookupError, AuthenticationError, AirflowNotFoundException)


class OnDeadline(StrEnum):
    """What a held task does when its deadline comes before a green enough moment."""

    RUN = "run"  # run anyway (default: never starve a task)
    FAIL = "fail"
    SKIP = "skip"


class OnOutage(StrEnum):
    """What a held task does when no carbon data can be had: run now (open) or fail (closed)."""

    OPEN = "open"
    CLOSED = "closed"


_E = TypeVar("_E", bound=StrEnum)


def parse_choice(kind: type[_E], value: str | _E, name: str) -> _E:
    """`value` as a member of `kind`, or an error naming the bad value and the valid ones."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidInputError(
            f"{name}={value!r} is not valid; use one of {[m.value for m in kind]}"
        ) from None


def run_reference_time(context: Mapping[str, Any]) -> pd.Timestamp:
    """The wall moment a derived deadline counts from: data interval end, else run-after, else now."""
    if context.get("data_interval_end") is not None:
        return require_utc(context["data_interval_end"], "data_interval_end")
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if run_after is not None:
        return require_utc(run_after, "run_after")
    return utcnow()


def resolve_deadline(
    context: Mapping[str, Any],
    *,
    deadline: datetime | str | None,
    allowance: timedelta | str | None,
    clock: GridClock,
) -> pd.Timestamp:
    """The finish-by time in grid time: explicit, or the run's reference time (as grid time) plus allowance."""
    if deadline is not None and deadline != "":
        return parse_utc(deadline, "deadline")
    extra = DEFAULT_ALLOWANCE if allowance is None else parse_duration(allowance, "deadline_allowance")
    return clock.to_grid(run_reference_time(context)) + extra


def deferral_timeout(wall_deadline: pd.Timestamp) -> timedelta:
    """How long a deferral may last: until the deadline (wall time) plus a margin for the trigger to report.

    A plain `datetime.timedelta`: Airflow sends it to the supervisor with msgpack, which refuses pandas types.
    """
    left = max(wall_deadline - utcnow(), pd.Timedelta(0))
    return (left + DEFERRAL_MARGIN).to_pytimedelta()


def on_deadline_reached(policy: OnDeadline, message: str, log: WarningLog) -> None:
    """Apply the deadline policy: return to run anyway, or end the task failed or skipped."""
    if policy is OnDeadline.FAIL:
        raise AirflowFailException(f"{message}; on_deadline='fail'")
    if policy is OnDeadline.SKIP:
        raise AirflowSkipException(f"{message}; on_deadline='skip'")
    log.warning("%s; on_deadline='run': running now", message)


def on_outage(policy: OnOutage, message: str, log: WarningLog) -> None:
    """Apply the outage policy: fail closed, or log loudly and return so that the task runs (fail open)."""
    if policy is OnOutage.CLOSED:
        raise AirflowFailException(f"carbon data unavailable: {message}; on_outage='closed'")
    log.warning("carbon data unavailable: %s; on_outage='open': running now without carbon data", message)


@contextmanager
def failing_bad_input(task: str) -> Iterator[None]:
    """Turn bad input (unknown zone, bad value, missing connection) into a failed task with a clear message.

    No retry can fix bad input, so this fails without retrying.
    """
    try:
        yield
    except PERMANENT_ERRORS as exc:
        raise AirflowFailException(f"{task}: {exc}") from exc
