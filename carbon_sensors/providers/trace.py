"""A source backed by recorded traces: the embedded real data by zone, or the caller's own files.

"Now" only means something in replay: with a `Replay`, the trace is read as if live (every value labelled
replay); without one, `latest` is refused rather than answering with a year-old value.

Forecasts have no foresight by default: `forecast="model"` answers with what a user would have had at that
moment (our model fitted on the trace before it); `forecast_issues` (a recorded issues file or frame) answers
with the newest recorded provider issue; the recorded future itself only with `forecast="perfect"` (or
CARBON_AWARE_TRACE_FORECAST=perfect for sources built from configuration), and it is labelled a perfect
forecast wherever it shows.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd

from carbon_sensors import embedded
from carbon_sensors.errors import InvalidInputError, NoDataError, UnknownZoneError
from carbon_sensors.forecast.combine import MODEL_HISTORY_DAYS, assemble_forecast
from carbon_sensors.forecast.issues import hourly_issues, read_forecast_issues
from carbon_sensors.replay import Replay
from carbon_sensors.signal import IntensityReading, IntensitySignal, make_signal
from carbon_sensors.timeutil import require_utc, utcnow
from carbon_sensors.traces import read_trace

TraceForecast = Literal["model", "perfect"]
ENV_FORECAST = "CARBON_AWARE_TRACE_FORECAST"
PERFECT_LABEL = "recorded future: PERFECT FORECAST, asked for by name"


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
        forecast: TraceForecast | None = None,
        forecast_issues: str | Path | pd.DataFrame | None = None,
        history_days: float = MODEL_HISTORY_DAYS,
    ) -> None:
        named = forecast or os.environ.get(ENV_FORECAST) or "model"
        if named not in ("model", "perfect"):
            raise InvalidInputError(
                f"forecast={named!r} (argument or {ENV_FORECAST}) is not valid; use 'model' (no foresight) "
                "or 'perfect' (the recorded future)"
            )
        if named == "perfect" and forecast_issues is not None:
            raise InvalidInputError("forecast='perfect' and forecast_issues exclude each other; pick one")
        self.forecast_mode: TraceForecast = "perfect" if named == "perfect" else "model"
        self.history_days = history_days
        self.issues = (
            None
            if forecast_issues is None
            else hourly_issues(
                forecast_issues
                if isinstance(forecast_issues, pd.DataFrame)
                else read_forecast_issues(forecast_issues)
            )
        )
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

    @property
    def provides_forecast(self) -> bool:
        """Whether `forecast` is a provider's (recorded issues, or the recorded future) rather than our model,
        so `assemble_forecast` does not blend our model with itself."""
        return self.forecast_mode == "perfect" or self.issues is not None

    @property
    def forecast_is_exact(self) -> bool:
        """The recorded future is the truth: the blend must not dilute it with our model."""
        return self.forecast_mode == "perfect"

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        """What a user would have had at `start` (default: now): our model, the newest recorded issue, or
        with forecast="perfect" the recorded future, labelled as such."""
        begin = require_utc(start, "start") if start is not None else self.now()
        sig = self.signal(zone)
        if self.issues is not None:
            return self._recorded_issue(zone, sig, begin, horizon)
        if self.forecast_mode == "model":
            past = pd.Timedelta(days=self.history_days)
            made = assemble_forecast(self, zone, begin, horizon, history=past, use_provider=False)
            return replace(made, replay=self.replay is not None, source=f"{made.source} (no foresight)")
        begin = pd.Timestamp(begin).floor(sig.resolution)
        future = sig.between(begin, begin + horizon)
        if future.values.dropna().empty:
            raise NoDataError(
                f"{zone} ({sig.source}): no recorded data from {begin.isoformat()} for {horizon}"
            )
        return replace(
            future,
            source=f"{sig.source} ({PERFECT_LABEL})",
            replay=self.replay is not None,
            issued_at=begin if start is None else utcnow(),
        )

    def _recorded_issue(
        self, zone: str, sig: IntensitySignal, begin: datetime, horizon: timedelta
    ) -> IntensitySignal:
        """The newest recorded issue issued at or before `begin`, from `begin` for `horizon`."""
        assert self.issues is not None
        moment = pd.Timestamp(begin)
        issued = self.issues[self.issues["issued_at"] <= moment]
        if issued.empty:
            raise NoDataError(f"{zone}: no recorded forecast issue at or before {moment.isoformat()}")
        newest = issued[issued["issued_at"] == issued["issued_at"].max()]
        hour = moment.floor("h")
        ahead = newest[(newest["target"] >= hour) & (newest["target"] < hour + horizon)]
        if ahead.empty:
            raise NoDataError(
                f"{zone}: the recorded issue of {newest['issued_at'].iloc[0]} ends before {moment}"
            )
        values = pd.Series(ahead["forecast"].to_numpy(), index=pd.DatetimeIndex(ahead["target"]))
        return make_signal(
            values,
            zone=zone,
            kind=sig.kind,
            source=f"recorded provider issue of {newest['issued_at'].iloc[0].isoformat()}",
            resolution=pd.Timedelta(hours=1),
            replay=self.replay is not None,
            issued_at=pd.Timestamp(newest["issued_at"].iloc[0]),
        )

    async def alatest(self, zone: str) -> IntensityReading:
        return self.latest(zone)

    async def ahistory(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        return self.history(zone, start, end)

    async def aforecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        """`forecast` in a worker thread: fitting our model takes a few hundred ms, too long for an event loop."""
        return await asyncio.to_thread(self.forecast, zone, start, horizon)
