"""Replay: live through recorded data as if it were now, at a chosen start and speed.

Why: a demo (or a test) can watch a day of real grid data pass in a minute. The mapping is a pure function of
three numbers, so it travels to other processes (Airflow triggerer, Prefect worker) through the environment.

One epoch per process chain: without `CARBON_AWARE_REPLAY_WALL_START` the first reading fixes it to "now" and
writes it back into the environment, so later readings and child processes share one grid clock. A process
that does not inherit the environment (an Airflow task resumed after a deferral, a rescheduled Prefect run)
gets it handed on (`replay_handoff()`) and takes it on (`adopt_replay()`). Before, every reading restarted the
clock and a rescheduled run saw the same dirty hour again, forever.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import pandas as pd

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.timeutil import parse_utc, require_utc, utc_from_ns, utcnow

ENV_START = "CARBON_AWARE_REPLAY_START"
ENV_WALL_START = "CARBON_AWARE_REPLAY_WALL_START"
ENV_SPEED = "CARBON_AWARE_REPLAY_SPEED"
ENV_NAMES = (ENV_START, ENV_WALL_START, ENV_SPEED)
_EPOCH_LOCK = threading.Lock()  # two threads reading first must fix one epoch, not two
MIN_SPEED, MAX_SPEED = 1e-3, 1e6
"""Replay speeds allowed (a day a minute is 1440, a year a minute about 5e5). Beyond them the mapped clocks
leave pandas' timestamp range (years 1677-2262) at once or within hours, and `inf` cannot be mapped at all."""


def _check_speed(speed: float, name: str) -> None:
    """InvalidInputError unless `speed` is within [MIN_SPEED, MAX_SPEED] (so neither inf nor NaN)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidInputError(
            f"{name}={speed!r} must be a finite number from {MIN_SPEED:g} to {MAX_SPEED:g} "
            "(e.g. 1440: a day a minute)"
        )


@dataclass(frozen=True)
class Replay:
    """Trace time `trace_start` corresponds to wall time `wall_start`; trace time runs `speed` times faster."""

    trace_start: pd.Timestamp
    wall_start: pd.Timestamp
    speed: float = 1.0

    def __post_init__(self) -> None:
        _check_speed(self.speed, "replay speed")
        object.__setattr__(self, "trace_start", require_utc(self.trace_start, "trace_start"))
        object.__setattr__(self, "wall_start", require_utc(self.wall_start, "wall_start"))

    @classmethod
    def starting_now(cls, trace_start: datetime, speed: float = 1.0) -> Replay:
        return cls(pd.Timestamp(trace_start), utcnow(), speed)

    def trace_time(self, wall: datetime | None = None) -> pd.Timestamp:
        """The trace moment that is 'now' at wall time `wall` (default: the real now)."""
        now_ns = time.time_ns() if wall is None else require_utc(wall, "wall").value
        return utc_from_ns(self._trace_ns(now_ns))

    def trace_time_ns(self) -> int:
        """`trace_time()` in integer nanoseconds: the clock a training session reads at every step."""
        return self._trace_ns(time.time_ns())

    @cached_property
    def _origins(self) -> tuple[int, int]:
        """(wall start in ns, trace start in us) as plain ints: no Timestamp is touched at every step."""
        return self.wall_start.value, self.trace_start.value // 1000

    def _trace_ns(self, wall_ns: int) -> int:
        """Rounded to whole microseconds, the wall clock's resolution, at which time indexes can be compared."""
        wall_start_ns, trace_start_us = self._origins
        return (trace_start_us + round((wall_ns - wall_start_ns) * self.speed / 1000)) * 1000

    def wall_time(self, trace: datetime) -> pd.Timestamp:
        """When trace moment `trace` will be 'now' on the wall clock (to wait for a replayed window)."""
        return self.wall_start + (require_utc(trace, "trace") - self.trace_start) / self.speed

    def wall_duration(self, trace_duration: timedelta) -> timedelta:
        return trace_duration / self.speed

    def to_env(self) -> dict[str, str]:
        return {
            ENV_START: self.trace_start.isoformat(),
            ENV_WALL_START: self.wall_start.isoformat(),
            ENV_SPEED: repr(self.speed),
        }

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Replay | None:
        """The replay configured in the environment, or None when replay is off.

        Without a wall start the first call fixes it to now and writes it into `environ` (see the module).
        """
        env = os.environ if environ is None else environ
        if not env.get(ENV_START):
            return None
        with _EPOCH_LOCK:
            wall = env.get(ENV_WALL_START) or env.setdefault(ENV_WALL_START, utcnow().isoformat())
        try:
            speed = float(env.get(ENV_SPEED, "1"))
        except ValueError:
            raise InvalidInputError(f"{ENV_SPEED}={env.get(ENV_SPEED)!r} is not a number") from None
        _check_speed(speed, ENV_SPEED)
        return cls(parse_utc(env[ENV_START], ENV_START), parse_utc(wall, ENV_WALL_START), speed)


def replay_handoff() -> dict[str, str]:
    """This process chain's replay settings, epoch included, for a process or run started later ({} if off)."""
    replay = Replay.from_env()
    return {} if replay is None else replay.to_env()


def adopt_replay(settings: Mapping[str, str]) -> None:
    """Take on the replay settings an earlier process of this chain handed on: its epoch wins over our own."""
    foreign = sorted(set(settings) - set(ENV_NAMES))
    if foreign:
        raise InvalidInputError(f"{foreign} is not a replay setting; expected only {list(ENV_NAMES)}")
    if settings:
        Replay.from_env(dict(settings))  # refuse bad values before they reach the environment
        os.environ.update(settings)


@dataclass(frozen=True)
class GridClock:
    """Grid time (what carbon data is indexed by) and wall time (what schedulers wait by).

    Live, they are one clock (`replay=None`). Under replay every carbon decision is made in grid time and
    converted to wall time only where a scheduler waits: a trigger moment, a deferral timeout, a scheduled run.
    """

    replay: Replay | None = None

    @classmethod
    def from_env(cls) -> GridClock:
        return cls(Replay.from_env())

    @property
    def replaying(self) -> bool:
        return self.replay is not None

    def now(self) -> pd.Timestamp:
        """Grid time now."""
        return utcnow() if self.replay is None else self.replay.trace_time()

    def now_ns(self) -> int:
        """Grid time now, in integer nanoseconds since the epoch (cheap enough to read at every step)."""
        return time.time_ns() if self.replay is None else self.replay.trace_time_ns()

    def to_wall(self, grid: datetime) -> pd.Timestamp:
        """When grid moment `grid` comes on the wall clock."""
        moment = require_utc(grid, "grid time")
        return moment if self.replay is None else self.replay.wall_time(moment)

    def to_grid(self, wall: datetime) -> pd.Timestamp:
        """The grid moment that is 'now' at wall moment `wall`."""
        moment = require_utc(wall, "wall time")
        return moment if self.replay is None else self.replay.trace_time(moment)

    def wall_duration(self, grid_duration: timedelta) -> timedelta:
        return grid_duration if self.replay is None else self.replay.wall_duration(grid_duration)

    def grid_duration(self, wall_duration: timedelta) -> timedelta:
        return wall_duration if self.replay is None else wall_duration * self.replay.speed
