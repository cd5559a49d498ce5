"""The one answer every strategy and planner gives a running job: run, wait until, or pause until, and why.

Kept in one place so the training runner, the Airflow operators and the Prefect tasks all read the same type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import pandas as pd

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.redact import redact
from carbon_sensors.timeutil import require_utc


class Action(StrEnum):
    RUN = "run"  # go (or keep going) now
    WAIT = "wait"  # not started yet: start no earlier than `until`
    PAUSE = "pause"  # running: checkpoint, stop, resume no earlier than `until`


@dataclass(frozen=True)
class Decision:
    """What to do now; `fallback` is True when data was missing and an explicit fallback policy decided."""

    action: Action
    reason: str
    until: pd.Timestamp | None = None
    intensity: float | None = None
    source: str | None = None
    fallback: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", redact(self.reason))  # reaches logs, XCom and artifacts
        if self.action is Action.RUN and self.until is not None:
            raise InvalidInputError("a 'run' decision has no 'until' time")
        if self.action is not Action.RUN:
            if self.until is None:
                raise InvalidInputError(f"a '{self.action.value}' decision needs an 'until' time")
            object.__setattr__(self, "until", require_utc(self.until, "until"))

    @classmethod
    def run(cls, reason: str, **facts: Any) -> Decision:
        return cls(Action.RUN, reason, **facts)

    @classmethod
    def wait_until(cls, until: datetime, reason: str, **facts: Any) -> Decision:
        return cls(Action.WAIT, reason, until=pd.Timestamp(until), **facts)

    @classmethod
    def pause_until(cls, until: datetime, reason: str, **facts: Any) -> Decision:
        return cls(Action.PAUSE, reason, until=pd.Timestamp(until), **facts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "reason": self.reason,
            "until": None if self.until is None else self.until.isoformat(),
            "intensity": self.intensity,
            "source": self.source,
            "fallback": self.fallback,
        }


class Strategy(Protocol):
    """Asked between steps of a running job (or before it starts): run now, or hold until when?

    `remaining_work` is how much run time the job still needs; `deadline` is its finish-by time. Every
    strategy must answer RUN when now + remaining_work reaches the deadline.
    """

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision: ...
