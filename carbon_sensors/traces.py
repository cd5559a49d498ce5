"""Read recorded carbon-intensity traces (CSV, gzip CSV, JSON, Parquet) into an IntensitySignal.

Formats recognised by their columns: the Electricity Maps portal export, the NESO national CSV, a plain
`timestamp,value` table, and this package's own JSON. Bad rows are reported with file and line number;
gaps are reported and only filled when asked; duplicate timestamps are an error.
"""

from __future__ import annotations

import json
import logging
import lzma
import tarfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from carbon_sensors.errors import TraceError, TraceQualityError
from carbon_sensors.signal import IntensitySignal, SignalKind, infer_resolution, make_signal
from carbon_sensors.validation import EARLIEST, LATEST, MAX_INTENSITY, intensity_problem, short_repr

log = logging.getLogger(__name__)

GapPolicy = Literal["report", "error", "interpolate"]
_TIME_COLUMNS = ("timestamp", "datetime (utc)", "datetime", "time", "from", "point_time", "date")
_VALUE_COLUMNS = ("value", "intensity", "carbon_intensity", "carbon intensity", "actual", "moer")
_EM_LCA = "Carbon Intensity gCO₂eq/kWh (LCA)"
_EM_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"
_MISSING = ("", "nan", "NaN", "None", "null")
_EM_TIME = "Datetime (UTC)"
_DECOMPRESS_ERRORS = (EOFError, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError)
"""What pandas' decompression raises on a cut-off or corrupt .gz/.bz2/.xz/.zip/.tar (none is an OSError)."""
MAX_PERIODS = 10_000_000
"""A trace may span at most this many periods of its resolution (10 years of minutes); a sparser file is
malformed, and listing its gaps would exhaust memory."""


@dataclass(frozen=True)
class _Table:
    """Raw text columns from a file, before any parsing, with the line number of each row."""

    times: pd.Series
    values: pd.Series
    lines: pd.Series
    zone: str | None
    source: str
    assume_utc: bool


def read_trace(
    path: str | Path,
    *,
    zone: str | None = None,
    kind: SignalKind | str = SignalKind.AVERAGE,
    column: str | None = None,
    assume_utc: bool = False,
    gaps: GapPolicy = "report",
) -> IntensitySignal:
    """Read a trace file into a signal.

    `column` picks the value column (e.g. "direct" for an Electricity Maps export, "forecast" for NESO).
    `assume_utc` accepts timestamps without an offset as UTC; without it they are an error.
    """
    file = Path(path)
    if gaps not in ("report", "error", "interpolate"):
        raise TraceError(f"gaps={gaps!r} is not valid; use 'report', 'error' or 'interpolate'")
    if not file.is_file():
        raise TraceError(f"trace file {file} does not exist or is not a file")
    table = _read_table(file, column, assume_utc)
    series = _parse(file, table)
    resolution = infer_resolution(series.index) if len(series) > 1 else pd.Timedelta(hours=1)
    periods = (series.index[-1] - series.index[0]) / resolution
    if periods > MAX_PERIODS:
        raise TraceError(
            f"{file}: {len(series)} rows spread from {series.index[0].isoformat()} to "
            f"{series.index[-1].isoformat()} at a {format_step(resolution)} step make {periods:.0f} periods "
            f"(at most {MAX_PERIODS}); split the file or fix its timestamps"
        )
    signal = make_signal(
        series,
        zone=zone or table.zone or file.name.split(".")[0],
        kind=kind,
        source=table.source,
        resolution=resolution,
    )
    return apply_gap_policy(signal, gaps, where=str(file))


def apply_gap_policy(signal: IntensitySignal, gaps: GapPolicy, where: str) -> IntensitySignal:
    """Report gaps (log + note on the signal), refuse them, or fill them by time interpolation."""
    found = signal.gaps()
    if not found:
        return signal
    missing = sum(int((end - start) / signal.resolution) for start, end in found)
    first = ", ".join(f"{s.isoformat()}..{e.isoformat()}" for s, e in found[:3])
    text = f"{where}: {missing} missing period(s) of {format_step(signal.resolution)} in {len(found)} gap(s), first: {first}"
    if gaps == "error":
        raise TraceQualityError(text + "; pass gaps='interpolate' to fill them or gaps='report' to keep them")
    if gaps == "interpolate":
        full = pd.date_range(signal.start, signal.end - signal.resolution, freq=signal.resolution)
        filled = signal.values.reindex(signal.values.index.union(full)).interpolate(method="time")
        log.warning("%s; filled by time interpolation as asked", text)
        return replace(signal, values=filled, notes=(*signal.notes, f"interpolated: {text}"))
    log.warning("%s; kept as gaps (not interpolated)", text)
    return replace(signal, notes=(*signal.notes, f"gaps: {text}"))


def format_step(step: pd.Timedelta) -> str:
    """'30min', '1h', '5min': how people write a resolution."""
    minutes = int(step.total_seconds() // 60)
    return (
        f"{minutes // 60}h"
        if minutes and minutes % 60 == 0
        else f"{minutes}min"
        if minutes
        else f"{step.total_seconds()}s"
    )


# --- reading raw tables ----------------------------------------------------------------------------------
def _read_table(file: Path, column: str | None, assume_utc: bool) -> _Table:
    suffixes = "".join(file.suffixes).lower()
    try:
        if suffixes.endswith(".parquet"):
            return _from_frame(file, _text(pd.read_parquet(file)), column, assume_utc, first_line=1)
        if suffixes.endswith(".json"):
            return _from_json(file, column, assume_utc)
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8")
    except TraceError:
        raise
    except _DECOMPRESS_ERRORS as exc:
        raise TraceError(
            f"cannot read trace file {file}: its compressed data is truncated or corrupt "
            f"({type(exc).__name__}: {short_repr(str(exc))}); copy or export the file again"
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:  # ValueError covers bad UTF-8, JSON and CSV
        raise TraceError(f"cannot read trace file {file}: {short_repr(str(exc))}") from exc
    return _from_frame(file, frame, column, assume_utc, first_line=2)


def _from_frame(
    file: Path, frame: pd.DataFrame, column: str | None, assume_utc: bool, first_line: int
) -> _Table:
    lines = pd.Series(range(first_line, first_line + len(frame)), index=frame.index)
    frame.columns = [str(c) for c in frame.columns]
    cols = {c.strip().lower(): c for c in frame.columns}
    if _EM_LCA in frame.columns:  # Electricity Maps portal export; its time column is declared UTC
        pick = {"lifecycle": _EM_LCA, "lca": _EM_LCA, "direct": _EM_DIRECT, None: _EM_LCA}
        value_col = pick.get(column, column)
        _require_column(file, frame, _EM_TIME, f"an Electricity Maps portal export (a file with {_EM_LCA!r})")
        _require_column(file, frame, value_col)
        zone = frame["Zone Id"].iloc[0] if "Zone Id" in frame.columns and len(frame) else None
        return _Table(frame[_EM_TIME], frame[str(value_col)], lines, zone, "electricitymaps-portal", True)
    time_col = next((cols[c] for c in _TIME_COLUMNS if c in cols), None)
    value_col = column if column is not None else next((cols[c] for c in _VALUE_COLUMNS if c in cols), None)
    if time_col is None or value_col is None:
        raise TraceError(
            f"{file}: cannot find a time and a value column in {list(frame.columns)}; expected a time column "
            f"named one of {list(_TIME_COLUMNS)} and a value column named one of {list(_VALUE_COLUMNS)} "
            "(or pass column=...)"
        )
    _require_column(file, frame, value_col)
    source = "neso" if {"from", "forecast", "actual"} <= set(cols) else f"trace:{file.name}"
    return _Table(frame[time_col], frame[value_col], lines, None, source, assume_utc)


def _from_json(file: Path, column: str | None, assume_utc: bool) -> _Table:
    doc: Any = json.loads(file.read_text(encoding="utf-8"))
    rows = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TraceError(
            f"{file}: expected a JSON list of objects or an object with a 'data' list, "
            "each object with a timestamp and a value"
        )
    if not rows:
        raise TraceError(f"{file}: no data rows (an empty list); expected one object per period")
    table = _from_frame(file, _text(pd.DataFrame(rows)), column, assume_utc, first_line=1)
    zone = doc.get("zone") if isinstance(doc, dict) else None
    if zone is not None and not isinstance(zone, str):
        raise TraceError(f"{file}: 'zone' is {short_repr(zone)}; expected a zone name such as 'DE'")
    source = doc.get("source") if isinstance(doc, dict) and doc.get("source") else table.source
    return replace(table, zone=zone, source=short_repr(source) if not isinstance(source, str) else source)


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, a missing one as '' (as the CSV reader gives them)."""
    return frame.astype(str).fillna("")


def _require_column(file: Path, frame: pd.DataFrame, name: Any, needed_by: str = "") -> None:
    """TraceError naming the missing column, what needs it (when said) and the columns there are."""
    if name not in frame.columns:
        why = f", which {needed_by} must have" if needed_by else ""
        raise TraceError(f"{file}: no column {name!r}{why}; columns are {list(frame.columns)}")


# --- parsing with line numbers ---------------------------------------------------------------------------
def _parse(file: Path, table: _Table) -> pd.Series:
    if table.times.empty:
        raise TraceError(f"{file}: no data rows, only a header; expected one row per period")
    times = _times(file, table)
    raw_values = table.values.str.strip()
    empty = raw_values.isin(_MISSING)
    if empty.all():
        raise TraceError(
            f"{file}: all {len(empty)} values are empty (column {table.values.name!r}); expected numbers in "
            "gCO2eq/kWh (pass column=... if another column holds them)"
        )
    values = pd.to_numeric(raw_values.where(~empty), errors="coerce")
    bad_value = values.isna() & ~empty
    if bad_value.any():
        _bad_row(file, table, bad_value, "value", raw_values, "a number in gCO2eq/kWh")
    out_of_range = ~empty & ~values.between(0.0, MAX_INTENSITY)
    if out_of_range.any():
        first = float(values[out_of_range].iloc[0])
        _bad_row(file, table, out_of_range, "value", raw_values, str(intensity_problem(first)))
    series = pd.Series(values.to_numpy(dtype="float64"), index=pd.DatetimeIndex(times), name="intensity")
    duplicated = series.index.duplicated(keep=False)
    if duplicated.any():
        dup_lines = table.lines[duplicated].tolist()[:6]
        first_dup = series.index[duplicated][0].isoformat()
        raise TraceQualityError(
            f"{file}: duplicate timestamps, first {first_dup} (lines {dup_lines}); each period must appear once"
        )
    return series.sort_index()


def _times(file: Path, table: _Table) -> pd.Series:
    """The time column as UTC; rows may carry different offsets (a DST switch in local time)."""
    raw = table.times.str.strip()
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() | (parsed < EARLIEST) | (parsed >= LATEST)
    if bad.any():
        expected = f"an ISO 8601 datetime between {EARLIEST:%Y} and {LATEST:%Y}, e.g. 2023-06-01T00:00Z"
        _bad_row(file, table, bad, "timestamp", raw, expected)
    if not table.assume_utc:
        naive = _naive(raw)
        if naive.any():
            line = int(table.lines[naive].iloc[0])
            raise TraceError(
                f"{file}, line {line}: timestamp {raw[naive].iloc[0]!r} has no time zone; add an offset "
                "(e.g. '2023-06-01T00:00Z') or pass assume_utc=True (CLI: --assume-utc) if the file is UTC"
            )
    return parsed


def _naive(raw: pd.Series) -> pd.Series:
    """True for each timestamp written without a zone."""
    try:
        local = pd.to_datetime(raw, format="ISO8601")
    except ValueError:  # offsets differ between rows, or some rows have none: look at each one
        return raw.map(lambda text: pd.Timestamp(text).tzinfo is None)
    return pd.Series(not isinstance(local.dtype, pd.DatetimeTZDtype), index=raw.index)


def _bad_row(file: Path, table: _Table, mask: pd.Series, what: str, raw: pd.Series, expected: str) -> None:
    first = mask.to_numpy().nonzero()[0][0]
    line = int(table.lines.iloc[first])
    count = int(mask.sum())
    more = f" ({count - 1} more bad row(s) after it)" if count > 1 else ""
    raise TraceError(
        f"{file}, line {line}: bad {what} {short_repr(raw.iloc[first])}; expected {expected}{more}"
    )
