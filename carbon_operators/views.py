"""The plugin's charts from what the api-server already has: the XCom our operators pushed.

- `/carbon/runs?dag_id=...[&task_id=...]`: recent runs of a DAG (or one task) charted: emissions, avoided
  emissions, energy and pauses of each training, read from `CarbonAwareTrainingOperator`'s XCom report, with
  links to the runs; `/carbon/api/runs` serves the same rows as JSON (the chart's data).
- `/carbon/run?zone=...&dag_id=...&run_id=...[&task_id=...]` (a task's "Carbon intensity" link): the zone's
  history and forecast with what that run planned and waited for drawn on it (a window operator's chosen
  window, a sensor's threshold).

Reading XCom needs read access to the DAG's XCom, checked by Airflow's own auth manager
(`requires_access_dag`): anonymous callers get 401, users without the DAG get 403.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import pandas as pd
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from carbon_operators import plugin_source
from carbon_operators.links import RUN_PAGE
from carbon_operators.plugin_forecast import product_forecast
from carbon_sensors import charts
from carbon_sensors.errors import CarbonAwareError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.replay import GridClock
from carbon_sensors.signal import UNIT, IntensitySignal
from carbon_sensors.units import duration_text, energy_text, mass_text

RUNS_PATH = "runs"
RUN_PATH = RUN_PAGE
MAX_RUNS = 100
HISTORY_HOURS = 24.0

DagId = Annotated[str, Query(min_length=1, max_length=250, description="the DAG whose runs to chart")]
TaskId = Annotated[str | None, Query(max_length=250, description="only this task of the DAG")]
RunId = Annotated[str, Query(min_length=1, max_length=250, description="the DAG run")]
Zone = Annotated[str, Query(min_length=1, max_length=64, description="grid zone, e.g. DE")]
Limit = Annotated[int, Query(ge=1, le=MAX_RUNS, description="how many of the latest DAG runs")]

router = APIRouter(dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.XCOM))])


@dataclass(frozen=True)
class TrainingRun:
    """One training task's outcome in one DAG run, as its XCom report says (the chart's data)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    run_after: str
    state: str | None
    status: str
    zone: str | None
    emissions_g: float
    avoided_g: float
    energy_kwh: float
    pauses: int
    paused_seconds: float
    deferrals: int | None
    url: str

    def point(self) -> charts.RunPoint:
        """The run's bars, labelled by when it ran (run ids are long) and which task (and map index) trained."""
        task = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        return charts.RunPoint(
            label=f"{pd.Timestamp(self.run_after):%Y-%m-%d %H:%M:%S}\n{task}",
            emissions_g=self.emissions_g,
            avoided_g=self.avoided_g,
            energy_kwh=self.energy_kwh,
            pauses=self.pauses,
            paused_seconds=self.paused_seconds,
        )


@dataclass(frozen=True)
class RunMarks:
    """What a run's carbon-aware tasks decided: chosen windows (grid time) and a sensor's threshold."""

    windows: list[tuple[pd.Timestamp, pd.Timestamp]]
    threshold: float | None


def run_url(dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow UI page of a run (or of one task in it), relative to a page under `/carbon/`."""
    path = f"../dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return path if task_id is None else f"{path}/tasks/{quote(task_id, safe='')}"


def runs_url(dag_id: str, task_id: str | None = None) -> str:
    """The runs view of a DAG (or one task), relative to a page under `/carbon/`."""
    query = {"dag_id": dag_id} if task_id is None else {"dag_id": dag_id, "task_id": task_id}
    return f"{RUNS_PATH}?{urlencode(query)}"


def _return_values(
    session: Session, dag_id: str, *, task_id: str | None, run_ids: list[str] | None, limit: int
) -> list[tuple[XComModel, DagRun]]:
    """Return-value XComs of the latest `limit` runs of `dag_id` (or of `run_ids`), newest run first."""
    runs = select(DagRun.run_id).where(DagRun.dag_id == dag_id)
    if run_ids is not None:
        runs = runs.where(DagRun.run_id.in_(run_ids))
    latest = [r for (r,) in session.execute(runs.order_by(DagRun.run_after.desc()).limit(limit))]
    query = (
        select(XComModel, DagRun)
        .join(DagRun, (XComModel.dag_id == DagRun.dag_id) & (XComModel.run_id == DagRun.run_id))
        .where(XComModel.dag_id == dag_id, XComModel.key == "return_value", XComModel.run_id.in_(latest))
        .order_by(DagRun.run_after.desc(), XComModel.task_id, XComModel.map_index)
    )
    if task_id is not None:
        query = query.where(XComModel.task_id == task_id)
    return [(xcom, run) for xcom, run in session.execute(query)]


def training_runs(
    session: Session, dag_id: str, task_id: str | None = None, limit: int = 20
) -> list[TrainingRun]:
    """The training reports among the return values of the latest `limit` runs, newest first."""
    found = []
    for xcom, run in _return_values(session, dag_id, task_id=task_id, run_ids=None, limit=limit):
        value = XComModel.deserialize_value(xcom)
        report = value.get("report") if isinstance(value, dict) else None
        if not isinstance(report, dict) or "emissions_g" not in report:
            continue  # not a CarbonAwareTrainingOperator's report
        found.append(
            TrainingRun(
                dag_id=dag_id,
                run_id=run.run_id,
                task_id=xcom.task_id,
                map_index=xcom.map_index,
                run_after=pd.Timestamp(run.run_after).isoformat(),
                state=None if run.state is None else str(run.state),
                status=str(value.get("status")),
                zone=report.get("zone"),
                emissions_g=float(report["emissions_g"]),
                avoided_g=float(report["avoided_g"]),
                energy_kwh=float(report["energy_kwh_with_pue"]),
                pauses=int(report["pauses"]),
                paused_seconds=float(report["paused_seconds"]),
                deferrals=value.get("deferrals"),
                url=run_url(dag_id, run.run_id, xcom.task_id),
            )
        )
    return found


def run_marks(session: Session, dag_id: str, run_id: str, zone: str, task_id: str | None = None) -> RunMarks:
    """The chosen windows (window operators) and the threshold (sensors) in one run's XCom for `zone`.

    A value that names another zone (a multi-zone window that chose elsewhere) is left off `zone`'s chart.
    """
    windows: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    threshold = None
    for xcom, _ in _return_values(session, dag_id, task_id=task_id, run_ids=[run_id], limit=1):
        value = XComModel.deserialize_value(xcom)
        if not isinstance(value, dict) or value.get("zone", zone) != zone:
            continue
        if isinstance(value.get("slots"), list) and value["slots"]:
            windows += [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in value["slots"]]
        if isinstance(value.get("threshold"), int | float):
            threshold = float(value["threshold"])
    return RunMarks(windows, threshold)


@router.get(f"/api/{RUNS_PATH}")
def runs_data(session: SessionDep, dag_id: DagId, task_id: TaskId = None, limit: Limit = 20) -> Any:
    """The runs chart's data: one row per training task per run, newest run first."""
    rows = training_runs(session, dag_id, task_id, limit)
    return {"dag_id": dag_id, "task_id": task_id, "runs": [asdict(r) for r in rows]}


@router.get(f"/{RUNS_PATH}", response_class=HTMLResponse)
def runs_page(session: SessionDep, dag_id: DagId, task_id: TaskId = None, limit: Limit = 20) -> HTMLResponse:
    """The runs chart (oldest run left) and a table with links to each run."""
    rows = training_runs(session, dag_id, task_id, limit)
    subject = dag_id if task_id is None else f"{dag_id}.{task_id}"
    if not rows:
        body = (
            f"<p>No carbon-aware training reports in the latest {limit} runs of {html.escape(subject)}.</p>"
        )
        return HTMLResponse(page(f"Carbon-aware runs: {subject}", body))
    chart = charts.runs_chart(
        [r.point() for r in reversed(rows)], title=f"Carbon-aware training runs: {subject}"
    )
    table = "".join(
        f'<tr><td><a href="{html.escape(r.url)}" target="_top">{html.escape(r.run_id)}</a></td>'
        f"<td>{html.escape(r.task_id)}</td><td>{html.escape(r.status)}</td><td>{html.escape(str(r.zone))}</td>"
        f"<td>{mass_text(r.emissions_g)}</td><td>{mass_text(r.avoided_g)}</td><td>{energy_text(r.energy_kwh)}</td>"
        f"<td>{r.pauses} ({duration_text(r.paused_seconds)})</td></tr>"
        for r in rows
    )
    body = (
        f'<figure class="chart">{charts.inline_svg(chart)}</figure>'
        "<table><thead><tr><th>Run</th><th>Task</th><th>Status</th><th>Zone</th><th>Emissions</th>"
        "<th>Avoided</th><th>Energy</th><th>Pauses</th></tr></thead>"
        f"<tbody>{table}</tbody></table>"
    )
    return HTMLResponse(page(f"Carbon-aware runs: {subject}", body))


@router.get(f"/{RUN_PATH}", response_class=HTMLResponse)
async def run_page(
    session: SessionDep, dag_id: DagId, run_id: RunId, zone: Zone, task_id: TaskId = None, hours: float = 24.0
) -> HTMLResponse:
    """The zone's history and forecast, with the window and threshold of one run's carbon-aware tasks."""
    from carbon_operators.plugin import (  # the app around this router
        configured_source,
        render_page,
        status_of,
    )

    marks = await asyncio.to_thread(run_marks, session, dag_id, run_id, zone, task_id)
    subject = f"run {run_id} of {dag_id}" + ("" if task_id is None else f", task {task_id}")
    try:
        figure = await intensity_figure(configured_source(), zone, hours, marks, f"{zone}: {subject}")
    except CarbonAwareError as exc:
        body = f'<p class="error">{type(exc).__name__}: {html.escape(str(exc))}</p>'
        return HTMLResponse(render_page(zone, body), status_code=status_of(exc))
    links = (
        f'<p><a href="{html.escape(run_url(dag_id, run_id, task_id))}" target="_top">{html.escape(subject)}</a>'
        f' · <a href="{html.escape(runs_url(dag_id, task_id))}">recent runs</a></p>'
    )
    return HTMLResponse(render_page(zone, links + figure + marks_html(marks)))


def marks_html(marks: RunMarks) -> str:
    """The run's marks in words, under the chart."""
    windows = ", ".join(f"{a.isoformat()} to {b.isoformat()}" for a, b in marks.windows) or "none"
    threshold = "none" if marks.threshold is None else f"{marks.threshold:.1f} {UNIT}"
    return f'<p class="marks">Chosen window (grid time): {windows}. Sensor threshold: {threshold}.</p>'


async def intensity_figure(
    source: IntensitySource, zone: str, hours: float, marks: RunMarks | None, title: str
) -> str:
    """The chart of the Carbon intensity page: the last day recorded, the next `hours` forecast from now.

    History is best-effort (a source may keep none): without it the chart shows the forecast alone.
    """
    forecast = await product_forecast(source, zone, GridClock.from_env().now(), hours)  # the operators' own
    try:
        history: IntensitySignal | None = await plugin_source.recent(
            source, zone, forecast.start, HISTORY_HOURS
        )
    except CarbonAwareError:
        history = None
    return await asyncio.to_thread(
        forecast_figure, forecast, history, GridClock.from_env().now(), marks, title
    )


def forecast_figure(
    forecast: IntensitySignal,
    history: IntensitySignal | None,
    now: pd.Timestamp | None,
    marks: RunMarks | None,
    title: str,
) -> str:
    """Chart (a) as inline SVG markup (CPU work: callers on the event loop run it in a thread)."""
    svg = charts.forecast_chart(
        forecast,
        history=history,
        now=now,
        windows=[] if marks is None else marks.windows,
        threshold=None if marks is None else marks.threshold,
        title=title,
        fmt="svg",
    )
    return f'<figure class="chart">{charts.inline_svg(svg)}</figure>'


STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}.error{color:#b00}"
    ".chart{margin:0 0 1em}.chart svg{max-width:100%;height:auto}"
)


def page(title: str, body: str) -> str:
    """A whole self-contained page around `body` (already escaped); `title` is escaped here."""
    safe = html.escape(title)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{safe}</title><style>{STYLE}</style>"
        f"</head><body><h1>{safe}</h1>{body}</body></html>"
    )
