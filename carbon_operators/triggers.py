"""Triggers run by the triggerer: fully async, JSON-primitive kwargs, no side effects (they may run twice).

`CarbonIntensityTrigger` polls one zone and fires when it is green enough, when the deadline comes, or when
the data cannot be had; the event says which, and the deferred task decides what that means.

Under replay both triggers carry the deferring task's replay settings (its epoch included) and hand them back
in their event: the triggerer and the worker that resumes the task are other processes, and without the epoch
each would restart the replay clock (`adopt_replay_of(event)` takes it on in the resumed task).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from carbon_operators.hooks import CarbonIntensityHook, build_source
from carbon_operators.policy import PERMANENT_ERRORS
from carbon_sensors.errors import CarbonAwareError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.replay import Replay, adopt_replay, replay_handoff
from carbon_sensors.timeutil import parse_utc, utcnow

GREEN = "green"
DEADLINE = "deadline"
ERROR = "error"


def adopt_replay_of(event: Mapping[str, Any] | None) -> None:
    """In a task resumed from a trigger: take on the replay epoch of the process that deferred it."""
    adopt_replay((event or {}).get("replay") or {})


class CarbonIntensityTrigger(BaseTrigger):
    """Fire when `zone` is at or below `max_intensity` gCO2eq/kWh, or at `deadline` (wall time, ISO 8601).

    Polls start at a random phase within the first interval (the deferring task has just polled).
    A failed poll is retried at the next interval; `max_errors` failures in a row end the wait with an
    `error` event (the task's outage policy then runs it or fails it).
    """

    def __init__(
        self,
        *,
        zone: str,
        max_intensity: float,
        deadline: str,
        poll_seconds: float = 300.0,
        carbon_conn_id: str | None = None,
        max_errors: int = 3,
        replay: dict[str, str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.replay = (
            replay_handoff() if replay is None else dict(replay)
        )  # None: built by the deferring task
        self.zone = zone
        self.max_intensity = float(max_intensity)
        self.deadline = deadline
        self.poll_seconds = float(poll_seconds)
        self.carbon_conn_id = carbon_conn_id
        self.max_errors = int(max_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "zone": self.zone,
                "max_intensity": self.max_intensity,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "carbon_conn_id": self.carbon_conn_id,
                "max_errors": self.max_errors,
                "replay": self.replay,
            },
        )

    def _event(self, status: str, polls: int, **facts: Any) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": status,
                "zone": self.zone,
                "threshold": self.max_intensity,
                "polls": polls,
                "replay": self.replay,
                **facts,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = parse_utc(self.deadline, "deadline")
        try:
            settings = await CarbonIntensityHook(self.carbon_conn_id).aget_settings()
            replay = Replay.from_env(dict(self.replay)) if self.replay else None
            source: IntensitySource = build_source(settings, replay=replay)
        except (CarbonAwareError, AirflowNotFoundException) as exc:
            yield self._event(ERROR, 0, message=str(exc))
            return
        # The deferring task has just polled; start at a random phase of the interval, so that thousands
        # of triggers deferred together do not all wake in the same loop iteration, interval after interval.
        await asyncio.sleep(
            random.random() * min(self.poll_seconds, max(0.0, (deadline - utcnow()).total_seconds()))
        )
        polls = errors = 0
        while True:
            remaining = (deadline - utcnow()).total_seconds()
            if remaining <= 0:
                yield self._event(DEADLINE, polls, message=f"deadline {deadline.isoformat()} reached")
                return
            polls += 1
            try:
                reading = await source.alatest(self.zone)
            except PERMANENT_ERRORS as exc:
                yield self._event(ERROR, polls, message=str(exc))
                return
            except (CarbonAwareError, OSError) as exc:
                errors += 1
                self.log.warning("poll %d of %s failed (%d in a row): %s", polls, self.zone, errors, exc)
                if errors >= self.max_errors:
                    yield self._event(ERROR, polls, message=f"{errors} polls in a row failed; last: {exc}")
                    return
            else:
                errors = 0
                if reading.value <= self.max_intensity:
                    yield self._event(GREEN, polls, reading=reading.to_dict())
                    return
                self.log.debug(
                    "%s at %.1f > %.1f gCO2eq/kWh; next poll in %.0fs",
                    self.zone,
                    reading.value,
                    self.max_intensity,
                    self.poll_seconds,
                )
            await asyncio.sleep(min(self.poll_seconds, max(remaining, 0.0)))


class ResumeAtTrigger(DateTimeTrigger):
    """A `DateTimeTrigger` whose event carries the deferred task's state (JSON primitives) back to it.

    Why not deferral kwargs: `dag.test()` (Airflow 3.3) replaces them with the event when it runs a trigger in
    line, so state kept there is lost in tests and demos; in the event it survives both paths.
    """

    def __init__(
        self, moment: datetime, *, state: dict[str, Any], replay: dict[str, str] | None = None
    ) -> None:
        super().__init__(moment=moment)
        self.state = state
        self.replay = (
            replay_handoff() if replay is None else dict(replay)
        )  # None: built by the deferring task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment, "state": self.state, "replay": self.replay},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for _ in super().run():
            break
        payload = {"moment": self.moment.isoformat(), "state": self.state, "replay": self.replay}
        yield TriggerEvent(payload)  # type: ignore[no-untyped-call]
