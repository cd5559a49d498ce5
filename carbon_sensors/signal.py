"""The one carbon-intensity time-series type: a pandas Series plus what it measures and where it came from.

Why a wrapper and not a bare Series: a number without its zone, kind (average vs marginal) and source is how
tools end up comparing marginal savings with average ones. The wrapper checks its index once, at creation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from carbon_sensors.errors import IncompatibleSignalsError, InvalidInputError, NoDataError
from carbon_sensors.timeutil import require_utc
from carbon_sensors.validation import MAX_INTENSITY, intensity_problem

UNIT = "gCO2eq/kWh"


class SignalKind(StrEnum):
    """Average intensity (Electricity Maps, NESO) or marginal emission rate (WattTime MOER)."""

    AVERAGE = "average"
    MARGINAL = "marginal"

    @classmethod
    def parse(cls, value: str | SignalKind) -> SignalKind:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(
                f"signal kind {value!r} is not valid; use one of {[k.value for k in cls]}"
            ) from None


@dataclass(frozen=True)
class IntensitySignal:
    """Carbon intensity in gCO2eq/kWh indexed by the UTC start of each period.

    `lower`/`upper` hold a prediction interval when the signal is a forecast; `replay` marks values that are
    recorded data played back as if live.
    """

    values: pd.Series
    zone: str
    kind: SignalKind
    source: str
    resolution: pd.Timedelta
    lower: pd.Series | None = None
    upper: pd.Series | None = None
    replay: bool = False
    issued_at: pd.Timestamp | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        index = self.values.index
        if not isinstance(index, pd.DatetimeIndex):
            raise InvalidInputError(
                f"{self.zone}: signal index must be a DatetimeIndex, got {type(index).__name__}"
            )
        if index.tz is None or str(index.tz) != "UTC":
            raise InvalidInputError(f"{self.zone}: signal index must be tz-aware UTC, got tz={index.tz}")
        if not index.is_monotonic_increasing or index.has_duplicates:
            raise InvalidInputError(
                f"{self.zone}: signal index must be strictly increasing without duplicates"
            )
        if self.resolution <= pd.Timedelta(0):
            raise InvalidInputError(f"{self.zone}: resolution must be positive, got {self.resolution}")
        self._check_values()
        for name, band in (("lower", self.lower), ("upper", self.upper)):
            if band is not None and not band.index.equals(index):
                raise InvalidInputError(f"{self.zone}: {name} band must share the signal's index")

    def _check_values(self) -> None:
        """Refuse inf, negative and absurd values: a missing value is NaN (a gap), never a number."""
        values = self.values.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isnan(values) & ~((values >= 0) & (values <= MAX_INTENSITY))
        if bad.any():
            first = int(bad.nonzero()[0][0])
            value = float(values[first])
            raise InvalidInputError(
                f"{self.zone} ({self.source}): value {value!r} at {self.values.index[first].isoformat()} is not "
                f"{intensity_problem(value)} ({int(bad.sum())} such value(s)); mark a missing value as NaN"
            )

    # --- basic facts -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.values)

    @property
    def start(self) -> pd.Timestamp:
        if self.values.empty:
            raise NoDataError(f"{self.zone} ({self.source}): the signal is empty")
        return pd.Timestamp(self.values.index[0])

    @property
    def end(self) -> pd.Timestamp:
        """End of the last period (start of the last period plus the resolution)."""
        if self.values.empty:
            raise NoDataError(f"{self.zone} ({self.source}): the signal is empty")
        return pd.Timestamp(self.values.index[-1]) + self.resolution

    @property
    def label(self) -> str:
        """How a number from this signal should be named in reports."""
        replay = ", replay" if self.replay else ""
        return f"{self.zone} {self.kind.value} {UNIT} from {self.source}{replay}"

    # --- selection ---------------------------------------------------------------------------------------
    def between(self, start: datetime, end: datetime) -> IntensitySignal:
        """The periods that start in [start, end)."""
        lo, hi = require_utc(start, "start"), require_utc(end, "end")
        if hi <= lo:
            raise InvalidInputError(f"end={hi.isoformat()} must be after start={lo.isoformat()}")
        mask = (self.values.index >= lo) & (self.values.index < hi)
        return self._select(mask)

    def value_at(self, moment: datetime) -> float:
        """The value of the period that contains `moment`; NoDataError outside the data or in a gap."""
        ts = require_utc(moment, "moment")
        pos = int(self.values.index.searchsorted(ts, side="right")) - 1
        if pos < 0 or ts >= pd.Timestamp(self.values.index[pos]) + self.resolution:
            raise NoDataError(
                f"{self.zone} ({self.source}): no value at {ts.isoformat()}; data covers {self._span_text()}"
            )
        value = float(self.values.iloc[pos])
        if math.isnan(value):
            raise NoDataError(f"{self.zone} ({self.source}): the value at {ts.isoformat()} is missing (NaN)")
        return value

    def to_hourly(self) -> IntensitySignal:
        """Average finer data to hourly periods (hours with no data are dropped, not invented)."""
        if self.resolution >= pd.Timedelta(hours=1):
            return self
        hourly = self.values.resample("1h").mean().dropna()

        def band(s: pd.Series | None) -> pd.Series | None:
            return None if s is None else s.resample("1h").mean().reindex(hourly.index)

        return replace(
            self,
            values=hourly,
            resolution=pd.Timedelta(hours=1),
            lower=band(self.lower),
            upper=band(self.upper),
        )

    # --- data quality ------------------------------------------------------------------------------------
    def gaps(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Missing stretches as [start, end) pairs: periods absent from the index or holding NaN."""
        if self.values.empty:
            return []
        full = pd.date_range(self.start, self.end - self.resolution, freq=self.resolution)
        missing = full.difference(pd.DatetimeIndex(self.values.dropna().index))
        missing = missing[~self._covered_by_finer_rows(missing)]
        spans: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        for ts in missing:
            if spans and spans[-1][1] == ts:
                spans[-1] = (spans[-1][0], ts + self.resolution)
            else:
                spans.append((ts, ts + self.resolution))
        return spans

    def _covered_by_finer_rows(self, moments: pd.DatetimeIndex) -> Any:
        """True where a moment lies inside a present row (traces may switch to a finer step midway)."""
        present = pd.DatetimeIndex(self.values.dropna().index)
        pos = present.searchsorted(moments, side="right") - 1
        ends = present[pos.clip(min=0)] + self.resolution
        return (pos >= 0) & (moments < ends)

    def require_compatible(self, other: IntensitySignal) -> None:
        """Refuse to compare signals of different kinds or zones."""
        if self.kind != other.kind:
            raise IncompatibleSignalsError(
                f"cannot combine the {self.kind.value} signal ({self.label}) with the {other.kind.value} signal "
                f"({other.label}); savings in one do not transfer to the other"
            )
        if self.zone != other.zone:
            raise IncompatibleSignalsError(f"cannot combine zone {self.zone} with zone {other.zone}")

    # --- output ------------------------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """JSON-able rows: timestamp (ISO UTC), value, and the interval bounds when present."""
        rows: list[dict[str, Any]] = []
        for i, (ts, value) in enumerate(self.values.items()):
            row: dict[str, Any] = {
                "timestamp": pd.Timestamp(str(ts)).isoformat(),
                "value": _json_float(value),
            }
            if self.lower is not None and self.upper is not None:
                row["lower"] = _json_float(self.lower.iloc[i])
                row["upper"] = _json_float(self.upper.iloc[i])
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The whole signal as JSON-able data; `traces.read_trace` reads this shape back."""
        return {
            "zone": self.zone,
            "kind": self.kind.value,
            "source": self.source,
            "unit": UNIT,
            "resolution_seconds": int(self.resolution.total_seconds()),
            "replay": self.replay,
            "issued_at": None if self.issued_at is None else self.issued_at.isoformat(),
            "data": self.to_records(),
        }

    def _select(self, mask: Any) -> IntensitySignal:
        return replace(
            self,
            values=self.values[mask],
            lower=None if self.lower is None else self.lower[mask],
            upper=None if self.upper is None else self.upper[mask],
        )

    def _span_text(self) -> str:
        if self.values.empty:
            return "nothing (empty signal)"
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


@dataclass(frozen=True)
class IntensityReading:
    """One value "now": what a sensor compares with its threshold, with where and when it came from."""

    zone: str
    value: float
    period_start: pd.Timestamp
    kind: SignalKind
    source: str
    fetched_at: pd.Timestamp
    replay: bool = False

    def age(self, now: datetime) -> timedelta:
        """How old the value is at `now`, counted from the start of its period."""
        return require_utc(now, "now") - self.period_start

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "value": self.value,
            "unit": UNIT,
            "period_start": self.period_start.isoformat(),
            "kind": self.kind.value,
            "source": self.source,
            "fetched_at": self.fetched_at.isoformat(),
            "replay": self.replay,
        }


def make_signal(
    values: pd.Series,
    *,
    zone: str,
    kind: SignalKind | str = SignalKind.AVERAGE,
    source: str,
    resolution: pd.Timedelta | None = None,
    **extra: Any,
) -> IntensitySignal:
    """Build a signal from a Series, inferring the resolution (the most common step) when not given."""
    series = values.astype("float64").rename("intensity")
    series.index = series.index.rename("timestamp")
    if resolution is None:
        resolution = infer_resolution(series.index)
    return IntensitySignal(series, zone, SignalKind.parse(kind), source, resolution, **extra)


def infer_resolution(index: pd.Index) -> pd.Timedelta:
    """The most common step between consecutive timestamps (one hour when there is a single row)."""
    if len(index) < 2:
        return pd.Timedelta(hours=1)
    steps = pd.Series(index[1:] - index[:-1])
    return pd.Timedelta(steps.mode().iloc[0])


def _json_float(value: Any) -> float | None:
    f = float(value)
    return None if math.isnan(f) else round(f, 4)
