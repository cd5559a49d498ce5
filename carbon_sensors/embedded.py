"""The real recorded traces shipped inside the package: the offline and demo default.

Electricity Maps 2023 hourly (14 measured zones, lifecycle and direct) and NESO GB 2023 half-hourly
(forecast and actual). Attribution and licences: `data/ATTRIBUTION.md` beside this module.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from carbon_sensors.errors import InvalidInputError, UnknownZoneError
from carbon_sensors.signal import IntensitySignal, SignalKind, make_signal
from carbon_sensors.traces import GapPolicy, apply_gap_policy

ELECTRICITYMAPS = "electricitymaps-2023"
NESO = "neso-2023"

_EM_ZONES = (
    "AU-NSW",
    "AU-VIC",
    "BR-CS",
    "CA-ON",
    "CL-SEN",
    "DE",
    "GB",
    "KR",
    "SG",
    "US-CAL-CISO",
    "US-MIDA-PJM",
    "US-NY-NYIS",
    "US-TEX-ERCO",
    "ZA",
)


@dataclass(frozen=True)
class EmbeddedTrace:
    """One shipped file: which zone, which dataset, which columns it offers."""

    zone: str
    dataset: str
    columns: tuple[str, ...]
    default_column: str
    resolution: pd.Timedelta
    basis: str
    licence: str

    @property
    def filename(self) -> str:
        return f"{self.dataset}-{self.zone}.csv.gz"


CATALOGUE: tuple[EmbeddedTrace, ...] = (
    *(
        EmbeddedTrace(
            zone,
            ELECTRICITYMAPS,
            ("lifecycle", "direct"),
            "lifecycle",
            pd.Timedelta(hours=1),
            "consumption-based average, lifecycle (direct also available)",
            "ODbL, Electricity Maps",
        )
        for zone in _EM_ZONES
    ),
    EmbeddedTrace(
        "GB",
        NESO,
        ("actual", "forecast"),
        "actual",
        pd.Timedelta(minutes=30),
        "operational (combustion-only) average",
        "CC BY 4.0, NESO / carbonintensity.org.uk",
    ),
)
DATASETS = (ELECTRICITYMAPS, NESO)


def find(zone: str, dataset: str | None = None) -> EmbeddedTrace:
    """The catalogue entry for `zone` (Electricity Maps first when no dataset is named)."""
    if dataset is not None and dataset not in DATASETS:
        raise InvalidInputError(f"dataset {dataset!r} is not embedded; embedded datasets: {list(DATASETS)}")
    for entry in CATALOGUE:
        if entry.zone == zone and dataset in (None, entry.dataset):
            return entry
    known = sorted({e.zone for e in CATALOGUE if dataset in (None, e.dataset)})
    raise UnknownZoneError(unknown_zone_message(zone, known, f"embedded data ({dataset or 'any dataset'})"))


def unknown_zone_message(zone: str, known: list[str], where: str) -> str:
    """'unknown zone' text naming the closest known zones, shared by every source."""
    folded = {k.upper(): k for k in known}
    near = difflib.get_close_matches(zone.upper(), list(folded), n=3, cutoff=0.5)
    near += [folded[k] for k in folded if zone.upper() and (k.startswith(zone.upper()) or zone.upper() in k)]
    suggestions = list(dict.fromkeys(folded.get(n, n) for n in near))[:4]
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return f"zone {zone!r} is not known to {where}{hint} Known zones: {', '.join(known)}"


def load(
    zone: str, *, dataset: str | None = None, column: str | None = None, gaps: GapPolicy = "report"
) -> IntensitySignal:
    """The embedded trace of `zone` as a signal; `column` picks e.g. 'direct' or NESO's 'forecast'."""
    entry = find(zone, dataset)
    col = column or entry.default_column
    if col not in entry.columns:
        raise InvalidInputError(
            f"column {col!r} is not in {entry.filename}; choose one of {list(entry.columns)}"
        )
    series = _frame(entry.filename)[col]
    signal = make_signal(
        series,
        zone=zone,
        kind=SignalKind.AVERAGE,
        source=f"{entry.dataset}:{col}",
        resolution=entry.resolution,
    )
    return apply_gap_policy(signal, gaps, where=f"embedded {entry.filename}")


@functools.lru_cache(maxsize=32)
def _frame(filename: str) -> pd.DataFrame:
    # Read-only shared frame: callers get a signal holding a copy-on-write slice, never this object.
    with resources.files("carbon_sensors.data").joinpath(filename).open("rb") as f:
        frame = pd.read_csv(f, compression="gzip")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True, format="ISO8601"))
    return frame.astype("float64")
