"""Prefect artifacts for a carbon-aware run: a markdown emissions report, a per-epoch table, live progress.

The report shows the same fields the Airflow operator pushes to XCom (the emissions report's `to_dict`), so
both orchestrators tell one story. Nothing secret reaches an artifact: only numbers, names and paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.artifacts import update_progress_artifact as _update_progress

from carbon_sensors.errors import InvalidInputError

_KEY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
EPOCH_COLUMNS = ("epoch", "steps", "energy_kwh", "emissions_g", "avg_intensity", "intensity_source")
# Report rows in reading order: field, label, unit.
REPORT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("zone", "Grid zone", ""),
    ("kind", "Signal kind", ""),
    ("energy_kwh", "Energy", "kWh"),
    ("energy_kwh_with_pue", "Energy with PUE", "kWh"),
    ("pue", "PUE", ""),
    ("emissions_g", "Emissions", "gCO2eq"),
    ("avg_intensity", "Average intensity", "gCO2eq/kWh"),
    ("run_now_emissions_g", "Emissions if run immediately", "gCO2eq"),
    ("avoided_g", "Avoided emissions", "gCO2eq"),
    ("active_seconds", "Active time", "s"),
    ("paused_seconds", "Paused time", "s"),
    ("pauses", "Pauses", ""),
    ("intensity_sources", "Intensity sources", ""),
    ("power_sources", "Power sources", ""),
    ("energy_kwh_by_device", "Energy by device", "kWh"),
    ("submitted_at", "Submitted", "UTC"),
    ("started_at", "Started", "UTC"),
    ("finished_at", "Finished", "UTC"),
    ("intervals", "Measured intervals", ""),
    ("fallbacks", "Fallbacks", ""),
)


def check_key(key: str) -> str:
    """Artifact keys may hold only lowercase letters, digits and single dashes (Prefect's rule)."""
    if not _KEY.match(key):
        raise InvalidInputError(
            f"artifact key {key!r} is not valid; use lowercase letters, digits and dashes, e.g. 'carbon-report'"
        )
    return key


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "–"
    return str(value).replace("|", "\\|")


def markdown_report(title: str, summary: Mapping[str, Any], rows: Sequence[tuple[str, Any, str]]) -> str:
    """`summary` as bullet lines, then a field | value | unit table."""
    lines = [f"# {title}", ""]
    lines += [f"- **{name}**: {_cell(value)}" for name, value in summary.items()]
    lines += ["", "| field | value | unit |", "|---|---|---|"]
    lines += [f"| {label} | {_cell(value)} | {unit} |" for label, value, unit in rows]
    return "\n".join(lines) + "\n"


def emissions_rows(report: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The emissions report's fields as table rows, known ones labelled, any others appended by name."""
    rows = [(label, report.get(name), unit) for name, label, unit in REPORT_ROWS]
    known = {name for name, _, _ in REPORT_ROWS} | {"unit"}
    return rows + [(name, report[name], "") for name in sorted(set(report) - known)]


def window_rows(window: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """A wait's outcome (and its plan) as table rows."""
    plan = window.get("plan") or {}
    return [
        ("Window start (grid time)", window.get("window_start"), "UTC"),
        ("Window end (grid time)", window.get("window_end"), "UTC"),
        ("Deadline (finish by)", window.get("deadline"), "UTC"),
        ("Expected intensity", plan.get("expected_intensity"), "gCO2eq/kWh"),
        ("Run-now intensity", plan.get("run_now_intensity"), "gCO2eq/kWh"),
        ("Expected savings", plan.get("savings_pct"), "%"),
        ("Forecast", plan.get("forecast_source"), ""),
        ("Signal kind", plan.get("kind"), ""),
        ("Waited in process", window.get("waited_seconds"), "s"),
        ("Fallback", window.get("fallback"), ""),
    ]


def publish_markdown(
    title: str,
    summary: Mapping[str, Any],
    rows: Sequence[tuple[str, Any, str]],
    *,
    key: str,
    description: str,
) -> UUID:
    return _created(
        create_markdown_artifact(
            markdown_report(title, summary, rows), key=check_key(key), description=description
        )
    )


def publish_epoch_table(rows: Sequence[Mapping[str, Any]], *, key: str, description: str) -> UUID:
    """One row per epoch with `EPOCH_COLUMNS` (energy kWh, gCO2eq, mean gCO2eq/kWh, intensity source)."""
    table = [{col: row.get(col) for col in EPOCH_COLUMNS} for row in rows]
    return _created(create_table_artifact(table, key=check_key(key), description=description))


class LiveProgress:
    """A progress artifact (0-100 %) created once and updated as work advances; updates never go backwards."""

    def __init__(self, *, key: str, description: str, start: float = 0.0) -> None:
        self.percent = _clamp(start)
        self.artifact_id = _created(
            create_progress_artifact(self.percent, key=check_key(key), description=description)
        )

    def update(self, percent: float, description: str | None = None) -> None:
        value = max(self.percent, _clamp(percent))
        if value == self.percent and description is None:
            return
        self.percent = value
        _update_progress(self.artifact_id, value, description=description)


def _created(artifact_id: object) -> UUID:
    # Called from sync code, Prefect's sync/async dispatch returns the id itself, not a coroutine.
    assert isinstance(artifact_id, UUID), artifact_id
    return artifact_id


def _clamp(percent: float) -> float:
    return min(100.0, max(0.0, float(percent)))
