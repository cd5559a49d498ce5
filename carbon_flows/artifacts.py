"""Prefect artifacts for a carbon-aware run: a markdown emissions report with its chart, a per-epoch table,
live progress.

The report shows the same fields the Airflow operator pushes to XCom (the emissions report's `to_dict`), so
both orchestrators tell one story, with numbers rounded and put in a unit of their size (Wh or kWh, gCO2eq or
kgCO2eq). The chart travels inside the markdown as a `data:` PNG: the Prefect 3.9 UI renders a markdown
image as a plain `<img>`, while its image artifact prints the whole URL under the picture (checked in
Chromium). Keys name the training, not the flow run: a training's rescheduled runs carry its id in a tag, so
their artifacts continue one history and two trainings never share one. Nothing secret reaches an artifact.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    Artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from prefect.artifacts import update_progress_artifact as _update_progress
from prefect.context import FlowRunContext

from carbon_sensors import charts
from carbon_sensors.emissions import REPORT_FIELDS, read_jsonl
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.redact import redact, redact_value
from carbon_sensors.units import duration_scale, energy_scale, mass_scale, rounded, significant

_KEY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TRAINING_TAG = "carbon-aware:training:"
# Report rows in reading order: field, label, base unit (shown scaled to the value's size), as the CLI's.
REPORT_ROWS = REPORT_FIELDS
_SCALES = {"kWh": energy_scale, "gCO2eq": mass_scale, "s": duration_scale}


def check_key(key: str) -> str:
    """Artifact keys may hold only lowercase letters, digits and single dashes (Prefect's rule)."""
    if not _KEY.match(key):
        raise InvalidInputError(
            f"artifact key {key!r} is not valid; use lowercase letters, digits and dashes, e.g. 'carbon-report'"
        )
    return key


def training_id() -> str | None:
    """The training this flow run works on: the id its first run handed on in a tag, else this run's own.

    The first 12 hex digits of the first run's id: unique enough to keep trainings apart, short enough to read.
    None outside a flow run.
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    for tag in ctx.flow_run.tags:
        if tag.startswith(TRAINING_TAG):
            return tag.removeprefix(TRAINING_TAG)
    return ctx.flow_run.id.hex[:12]


def training_key(prefix: str, training: str | None, name: str) -> str:
    """`prefix-training-name`, e.g. 'carbon-training-1f0c2a9b7d3e-report' (no training: 'prefix-name')."""
    return check_key("-".join(part for part in (prefix, training, name) if part))


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "–"
    return redact(str(value)).replace("|", "\\|")


def chart_markdown(png: bytes, alt: str) -> str:
    """A PNG as a markdown image the artifact carries itself (no storage, no URL to serve)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def run_chart(timeline_path: str | None, epochs: Sequence[Mapping[str, Any]], title: str) -> str | None:
    """The run's chart (intensity with pauses shaded, energy per epoch) from its emissions timeline, as
    markdown; None when nothing was measured yet."""
    if timeline_path is None or not Path(timeline_path).is_file():
        return None
    ledger = read_jsonl(timeline_path)
    if not ledger.intervals:
        return None
    png = charts.run_chart(ledger, [(row["epoch"], row["energy_kwh"]) for row in epochs], title=title)
    return chart_markdown(png, title)


def markdown_report(
    title: str,
    summary: Mapping[str, Any],
    rows: Sequence[tuple[str, Any, str]],
    chart: str | None = None,
) -> str:
    """`summary` as bullet lines, the chart (markdown) if any, then a field | value | unit table."""
    lines = [f"# {title}", ""]
    lines += [f"- **{name}**: {_cell(value)}" for name, value in summary.items()]
    lines += ["", chart] if chart else []
    lines += ["", "| field | value | unit |", "|---|---|---|"]
    lines += [f"| {label} | {_cell(value)} | {unit} |" for label, value, unit in rows]
    return "\n".join(lines) + "\n"


def readable(value: Any, unit: str) -> tuple[Any, str]:
    """A number (or a mapping of numbers) rounded and scaled to a unit of its size, with that unit."""
    scale = _SCALES.get(unit)
    if scale is None:
        return (f"{value:.1f}" if unit == "gCO2eq/kWh" and isinstance(value, float) else value), unit
    if isinstance(value, Mapping) and value:
        factor, shown = scale(max(abs(v) for v in value.values()))
        return {k: rounded(v * factor) for k, v in value.items()}, shown
    if isinstance(value, int | float) and not isinstance(value, bool):
        factor, shown = scale(value)
        return rounded(value * factor), shown
    return value, unit


def emissions_rows(report: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The emissions report's fields as table rows, known ones labelled, any others appended by name."""
    rows = [(label, *readable(report.get(name), unit)) for name, label, unit in REPORT_ROWS]
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
        ("Re-plans at the window", window.get("replans"), ""),
        ("Fallback", window.get("fallback"), ""),
    ]


def publish_markdown(
    title: str,
    summary: Mapping[str, Any],
    rows: Sequence[tuple[str, Any, str]],
    *,
    key: str,
    description: str,
    chart: str | None = None,
) -> UUID:
    return _created(
        create_markdown_artifact(
            markdown_report(title, summary, rows, chart), key=check_key(key), description=description
        )
    )


def epoch_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Epoch rows (energy_kwh, emissions_g, avg_intensity, intensity_source) as short, rounded columns.

    One unit per column, chosen by its largest value, is named in the header; the intensity source comes
    right after the epoch, so a narrow screen shows it without scrolling.
    """
    e_factor, e_unit = energy_scale(max((abs(r["energy_kwh"]) for r in rows), default=0.0))
    g_factor, g_unit = mass_scale(max((abs(r["emissions_g"]) for r in rows), default=0.0))
    return [
        {
            "epoch": row["epoch"],
            "intensity source": row["intensity_source"],
            "steps": row["steps"],
            f"energy ({e_unit})": rounded(row["energy_kwh"] * e_factor),
            f"emissions ({g_unit})": rounded(row["emissions_g"] * g_factor),
            "intensity (gCO2eq/kWh)": _one_decimal(row["avg_intensity"]),
        }
        for row in rows
    ]


def publish_epoch_table(rows: Sequence[Mapping[str, Any]], *, key: str, description: str) -> UUID:
    """One row per epoch, as `epoch_table` shows it."""
    table = redact_value(epoch_table(rows))
    return _created(create_table_artifact(table, key=check_key(key), description=description))


class LiveProgress:
    """A progress artifact (0-100 %) updated as work advances; updates never go backwards.

    Created under a key that already holds progress (a resumed training), it starts where that one ended.
    """

    def __init__(self, *, key: str, description: str) -> None:
        self.percent = _published_progress(check_key(key))
        self.artifact_id = _created(create_progress_artifact(self.percent, key=key, description=description))

    def update(self, percent: float, description: str | None = None) -> None:
        value = max(self.percent, _clamp(percent))
        if value == self.percent and description is None:
            return
        self.percent = value
        _update_progress(self.artifact_id, value, description=description)


def _published_progress(key: str) -> float:
    """The progress last published under `key`, 0 when none: a resumed training continues from there."""
    previous = Artifact.get(key)
    assert not isinstance(
        previous, Coroutine
    )  # called from sync code: the sync dispatch returns the artifact
    if previous is None or previous.type != "progress":
        return 0.0
    return _clamp(float(str(previous.data)))


def _one_decimal(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _created(artifact_id: object) -> UUID:
    # Called from sync code, Prefect's sync/async dispatch returns the id itself, not a coroutine.
    assert isinstance(artifact_id, UUID), artifact_id
    return artifact_id


def _clamp(percent: float) -> float:
    return min(100.0, max(0.0, float(percent)))
