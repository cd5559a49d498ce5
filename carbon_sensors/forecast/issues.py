"""Recorded provider forecast issues: read them, and lay them out as "the newest issue at each hour".

A file of issues has one row per (issue, target period): `issued_at,target_start,forecast` (UTC ISO 8601,
extra columns ignored, half-hourly or hourly targets). An issue counts only from its `issued_at` on, so at
hour h a policy sees the newest issue issued at or before h, never a later one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from carbon_sensors.errors import InvalidInputError, TraceError

COLUMNS = ("issued_at", "target_start", "forecast")
HOUR = pd.Timedelta(hours=1)


def read_forecast_issues(path: str | Path) -> pd.DataFrame:
    """The issues in a CSV or Parquet file as `issued_at, target_start, forecast` (UTC, float), sorted."""
    file = Path(path)
    if not file.is_file():
        raise TraceError(f"forecast issues file {file} does not exist or is not a file")
    try:
        frame = pd.read_parquet(file) if file.suffix.lower() == ".parquet" else pd.read_csv(file, dtype=str)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TraceError(f"cannot read forecast issues file {file}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise TraceError(f"{file}: missing column(s) {missing}; a forecast issues file needs {list(COLUMNS)}")
    out = pd.DataFrame({name: _utc_column(file, frame[name], name) for name in ("issued_at", "target_start")})
    out["forecast"] = pd.to_numeric(frame["forecast"], errors="coerce").astype("float64")
    bad = out["forecast"].isna() | ~np.isfinite(out["forecast"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(
            f"{file}: row {row + 2}: forecast {frame['forecast'].iloc[row]!r} is not a number (gCO2eq/kWh)"
        )
    if out.duplicated(["issued_at", "target_start"]).any():
        raise TraceError(f"{file}: an (issued_at, target_start) pair appears twice")
    return out.sort_values(["issued_at", "target_start"]).reset_index(drop=True)


def _utc_column(file: Path, raw: pd.Series, name: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(raw, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise TraceError(f"{file}: column {name} is not ISO 8601 times: {exc}") from exc
    if parsed.dt.tz is None:
        raise TraceError(f"{file}: column {name} has times without an offset; write them as UTC, e.g. ...Z")
    return parsed.dt.tz_convert("UTC")


def hourly_issues(issues: pd.DataFrame) -> pd.DataFrame:
    """Each issue averaged to hourly targets: rows (issued_at, target hour), column forecast.

    A target hour counts only when the issue covers the whole hour (both half-hours of a half-hourly issue),
    so a forecast that starts mid-hour does not stand for the hour's first half it never forecast.
    """
    hour = issues["target_start"].dt.floor("h")
    grouped = issues.assign(hour=hour).groupby(["issued_at", "hour"])["forecast"]
    step = issues.groupby("issued_at")["target_start"].diff().dropna()
    per_hour = max(1, round(HOUR.value / pd.Timedelta(step.median()).value)) if len(step) else 1
    table = grouped.agg(["mean", "count"]).reset_index()
    table = table[table["count"] >= per_hour]
    return table.rename(columns={"hour": "target", "mean": "forecast"})[["issued_at", "target", "forecast"]]


def newest_issue_matrix(
    issues: pd.DataFrame, start: pd.Timestamp, hours: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The newest issue usable at each hour of a trace, as (forecast matrix, issue age in hours).

    Row h (the hour starting at start + h) holds the issue issued at or before that moment, column k its
    forecast for hour h + k (NaN where the issue does not reach). Rows before the first issue are NaN.
    """
    if hours <= 0 or horizon <= 0:
        raise InvalidInputError(f"hours={hours} and horizon={horizon} must be positive")
    table = hourly_issues(issues)
    issued, grid, pos = _newest_issue(table, start, hours)
    out = np.full((hours, horizon), np.nan)
    by_issue = {key: frame for key, frame in table.groupby("issued_at")}
    for row in np.flatnonzero(pos >= 0):
        frame = by_issue[pd.Timestamp(issued[int(pos[row])])]
        k = ((frame["target"] - grid[int(row)]) / HOUR).to_numpy().astype(int)
        keep = (k >= 0) & (k < horizon)
        out[row, k[keep]] = frame["forecast"].to_numpy()[keep]
    return out, _ages(issued, grid, pos)


def issue_ages(issues: pd.DataFrame, start: pd.Timestamp, hours: int) -> np.ndarray:
    """Hours since the newest issue at each hour of a trace (NaN before the first issue).

    Why it is reported: live, a provider's forecast is minutes old (NESO publishes every 30 min); a sample of
    issues far apart leaves the backtest planning on old ones, and a reader should see how old.
    """
    return _ages(*_newest_issue(issues, start, hours))


def _newest_issue(
    issues: pd.DataFrame, start: pd.Timestamp, hours: int
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, np.ndarray]:
    """The issue times (sorted), the trace's hours, and at each hour the position of the newest issue (-1: none)."""
    issued = pd.DatetimeIndex(np.sort(issues["issued_at"].unique())).as_unit("ns")
    grid = pd.date_range(start, periods=hours, freq="h", tz="UTC").as_unit("ns")
    return issued, grid, np.searchsorted(issued.asi8, grid.asi8, side="right") - 1


def _ages(issued: pd.DatetimeIndex, grid: pd.DatetimeIndex, pos: np.ndarray) -> np.ndarray:
    age = (grid.asi8 - issued.asi8[np.maximum(pos, 0)]) / HOUR.value
    return np.asarray(np.where(pos >= 0, age, np.nan))
