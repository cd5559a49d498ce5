"""The one question every source answers: latest value, history and forecast for a zone, sync and async."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from carbon_sensors.signal import IntensityReading, IntensitySignal


@runtime_checkable
class IntensitySource(Protocol):
    """What sensors, planners and the training runner ask; live APIs and traces both implement it."""

    name: str

    def latest(self, zone: str) -> IntensityReading: ...

    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal: ...

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal: ...

    async def alatest(self, zone: str) -> IntensityReading: ...

    async def ahistory(self, zone: str, start: datetime, end: datetime) -> IntensitySignal: ...

    async def aforecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal: ...
