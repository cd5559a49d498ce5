"""A fallback chain: ask sources in order (e.g. Electricity Maps -> NESO -> last good value -> trace).

Every answer says which source gave it and how old it is; a value older than `max_age` is refused (that
source counts as failed) rather than passed on silently. Falling back is logged as a warning, and when
every source fails the error lists each one's cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

import pandas as pd

from carbon_sensors.errors import CarbonAwareError, FallbackExhaustedError, InvalidInputError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.signal import IntensityReading, IntensitySignal
from carbon_sensors.timeutil import utcnow

log = logging.getLogger(__name__)

LAST_GOOD = "last-good"
"""Put this name in the chain where the last good reading (per zone, kept by the chain) may answer."""

T = TypeVar("T")
Step = Generator[IntensitySource, IntensityReading | IntensitySignal | CarbonAwareError, T]


@dataclass(frozen=True)
class FallbackAnswer:
    """A reading plus where it came from: the answering source, its age, and what failed before it."""

    reading: IntensityReading
    source: str
    age: timedelta
    fell_back: bool
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.reading.to_dict(),
            "answered_by": self.source,
            "age_seconds": round(self.age.total_seconds(), 1),
            "fell_back": self.fell_back,
            "failures": list(self.failures),
        }


class FallbackChain:
    """Implements `IntensitySource` by asking its sources in order; `answer()` tells the whole story."""

    name = "fallback"

    def __init__(
        self,
        sources: Sequence[IntensitySource | str],
        *,
        max_age: timedelta = timedelta(hours=2),
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        if not sources:
            raise InvalidInputError("a fallback chain needs at least one source")
        for source in sources:
            if isinstance(source, str) and source != LAST_GOOD:
                raise InvalidInputError(
                    f"fallback entry {source!r} is not a source; use provider objects or {LAST_GOOD!r}"
                )
        if max_age <= timedelta(0):
            raise InvalidInputError(f"max_age={max_age} must be positive")
        self.sources = tuple(sources)
        self.max_age = max_age
        self.clock = clock
        self._last_good: dict[str, IntensityReading] = {}

    def __repr__(self) -> str:
        names = [s if isinstance(s, str) else s.name for s in self.sources]
        return f"FallbackChain({' -> '.join(names)}, max_age={self.max_age})"

    # --- the plans (sans-IO: they yield sources and receive each one's result or error) ------------------
    def _latest_plan(self, zone: str) -> Step[FallbackAnswer]:
        failures: list[str] = []
        for position, source in enumerate(self.sources):
            if isinstance(source, str):
                kept = self._last_good.get(zone)
                if kept is None:
                    failures.append(f"{LAST_GOOD}: no earlier good value for {zone}")
                    continue
                found: Any = replace(kept, source=f"{LAST_GOOD} ({kept.source})")
                name = LAST_GOOD
            else:
                found, name = (yield source), source.name
            if isinstance(found, CarbonAwareError):
                failures.append(f"{name}: {type(found).__name__}: {found}")
                continue
            answer = self._judge(zone, name, found, position > 0, failures)
            if answer is not None:
                return answer
        self._give_up(zone, "a current value", failures)

    def _signal_plan(self, zone: str, what: str) -> Step[IntensitySignal]:
        failures: list[str] = []
        live = [s for s in self.sources if not isinstance(s, str)]
        for position, source in enumerate(live):
            found = yield source
            if isinstance(found, IntensitySignal):
                if position > 0:
                    log.warning(
                        "%s for %s answered by %s after: %s", what, zone, source.name, "; ".join(failures)
                    )
                    found = replace(
                        found, notes=(*found.notes, f"fallback: earlier sources failed: {failures}")
                    )
                return found
            failures.append(f"{source.name}: {type(found).__name__}: {found}")
        self._give_up(zone, f"a {what}", failures)

    def _judge(
        self, zone: str, name: str, reading: IntensityReading, fell_back: bool, failures: list[str]
    ) -> FallbackAnswer | None:
        now = reading.fetched_at if reading.replay else self.clock()
        age = reading.age(now)
        if age > self.max_age:
            failures.append(f"{name}: stale: value from {reading.period_start.isoformat()} is {age} old")
            return None
        if name != LAST_GOOD:
            self._last_good[zone] = reading
        fell_back = fell_back or bool(failures)
        if fell_back:
            log.warning("carbon intensity for %s answered by %s after: %s", zone, name, "; ".join(failures))
        return FallbackAnswer(reading, reading.source, age, fell_back, tuple(failures))

    def _give_up(self, zone: str, what: str, failures: list[str]) -> NoReturn:
        raise FallbackExhaustedError(
            f"fallback: zone {zone!r}: no source gave {what}; " + "; ".join(failures),
            provider=self.name,
            zone=zone,
        )

    # --- driving them ------------------------------------------------------------------------------------
    def answer(self, zone: str) -> FallbackAnswer:
        return _drive(self._latest_plan(zone), lambda s: s.latest(zone))

    async def aanswer(self, zone: str) -> FallbackAnswer:
        return await _adrive(self._latest_plan(zone), lambda s: s.alatest(zone))

    def latest(self, zone: str) -> IntensityReading:
        return self.answer(zone).reading

    async def alatest(self, zone: str) -> IntensityReading:
        return (await self.aanswer(zone)).reading

    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        return _drive(self._signal_plan(zone, "history"), lambda s: s.history(zone, start, end))

    async def ahistory(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        return await _adrive(self._signal_plan(zone, "history"), lambda s: s.ahistory(zone, start, end))

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        return _drive(self._signal_plan(zone, "forecast"), lambda s: s.forecast(zone, start, horizon))

    async def aforecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        return await _adrive(self._signal_plan(zone, "forecast"), lambda s: s.aforecast(zone, start, horizon))


def _drive(plan: Step[T], ask: Callable[[IntensitySource], Any]) -> T:
    try:
        source = next(plan)
        while True:
            try:
                result = ask(source)
            except CarbonAwareError as exc:
                result = exc
            source = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done


async def _adrive(plan: Step[T], ask: Callable[[IntensitySource], Any]) -> T:
    try:
        source = next(plan)
        while True:
            try:
                result = await ask(source)
            except CarbonAwareError as exc:
                result = exc
            source = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done
