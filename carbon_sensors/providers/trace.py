"""A source backed by recorded traces: the embedded real data by zone, or the caller's own files.

"Now" only means something in replay: with a `Replay`, the trace is read as if live (every value labelled
replay); without one, `latest` is refused rather than answering with a year-old value.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from carbon_sensors import embedded
from carbon_sensors.errors import NoDataError, UnknownZoneError
from carbon_sensors.replay import Replay
from carbon_sensors.signal import IntensityReading, IntensitySignal
from carbon_sensors.timeutil import require_utc, utcnow
from carbon_sensors.traces import read_trace


class TraceProvider:
    """Serve recorded data through the `IntensitySource` protocol (no network, no keys)."""

    name = "trace"

    def __init__(
        self,
        *,
        dataset: str | None = None,
        column: str | None = None,
        files: dict[str, str | Path] | None = None,
        signals: dict[str, IntensitySignal] | None = None,
        replay: Replay | None = None,
    ) -> None:
        self.dataset = dataset
        self.column = column
        self.replay = replay
        self._signals: dict[str, IntensitySignal] = dict(signals or {})
        for zone, path in (files or {}).items():
            self._signals[zone] = read_trace(path, zone=zone)

    def signal(self, zone: str) -> IntensitySignal:
        """The whole trace for `zone`: the caller's own first, then the embedded data."""
        if zone in self._signals:
            return self._signals[zone]
        try:
            sig = embedded.load(zone, dataset=self.dataset, column=self.column)
        except UnknownZoneError as exc:
            if not self._signals:
                raise
            known = sorted(self._signals) + sorted({e.zone for e in embedded.CATALOGUE})
            raise UnknownZoneError(embedded.unknown_zone_message(zone, known, "the trace provider")) from exc
        self._signals[zone] = sig
        return sig

    def now(self) -> pd.Timestamp:
        """Trace time that counts as now: the replay clock, or refused without replay."""
        if self.replay is None:
            raise NoDataError(
                "a recorded trace has no 'now'; configure replay (Replay(...) or CARBON_AWARE_REPLAY_START) "
                "or ask for history/forecast at explicit times"
            )
        return self.replay.trace_time()

    def latest(self, zone: str) -> IntensityReading:
        sig = self.signal(zone)
        moment = self.now()
        value = sig.value_at(moment)
        pos = int(sig.values.index.searchsorted(moment, side="right")) - 1
        return IntensityReading(
            zone=zone,
            value=value,
            period_start=pd.Timestamp(sig.values.index[pos]),
            kind=sig.kind,
            source=f"{sig.source} (replay)",
            fetched_at=moment,
            replay=True,
        )

    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        sig = self.signal(zone).between(start, end)
        if self.replay is not None:
            sig = sig.between(require_utc(start, "start"), min(require_utc(end, "end"), self.now()))
        if sig.values.dropna().empty:
            raise NoDataError(f"{zone} ({self.signal(zone).source}): no data between {start} and {end}")
        return replace(sig, replay=self.replay is not None)

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        """The recorded future as a perfect forecast, labelled as such (a trace has no real forecast)."""
        begin = require_utc(start, "start") if start is not None else self.now()
        sig = self.signal(zone)
        begin = pd.Timestamp(begin).floor(sig.resolution)
        future = sig.between(begin, begin + horizon)
        if future.values.dropna().empty:
            raise NoDataError(
                f"{zone} ({sig.source}): no recorded data from {begin.isoformat()} for {horizon}"
            )
        return replace(
            future,
            source=f"{sig.source} (recorded future: perfect forecast)",
            replay=self.replay is not None,
            issued_at=begin if start is None else utcnow(),
        )

    async def alatest(self, zone: str) -> IntensityReading:
        return self.latest(zone)

    async def ahistory(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        return self.history(zone, start, end)

    async def aforecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        return self.forecast(zone, start, horizon)
