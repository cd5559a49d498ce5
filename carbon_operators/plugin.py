"""`CarbonPlugin`: a carbon-intensity page and JSON API served by the Airflow api-server under `/carbon`.

Airflow mounts plugin apps without its login, so the app itself depends on Airflow's own auth: the
`requires_access_view(AccessView.WEBSITE)` dependency the core API uses (the auth manager's user from the
session cookie or a bearer token, then "may this user see the UI at all"). Anonymous callers get 401 before
any handler or upstream call runs, under every auth manager (simple, FAB, ...).

The source is the one the CLI uses: `$CARBON_AWARE_PROVIDER` (credentials from the environment) or the
embedded real traces, replayed as live when `CARBON_AWARE_REPLAY_*` is set. Forecasts and plans are the
operators' own (the provider's forecast and our model blended, `plugin_forecast`). Handlers are async and
ask the source through `plugin_source` (normalised questions, shared and negatively cached calls, bounded
concurrency). Every failure is answered with its typed error's message (which never holds a secret) and an
HTTP status saying whose fault it was.
"""

from __future__ import annotations

import html
import os
from typing import Annotated, Any

import pandas as pd
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from carbon_operators import plugin_source, views
from carbon_operators.links import PAGE_PATH
from carbon_operators.plugin_forecast import product_forecast
from carbon_sensors.errors import (
    CarbonAwareError,
    InvalidInputError,
    NoDataError,
    ProviderError,
    UnknownZoneError,
)
from carbon_sensors.planner import plan_window
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.registry import make_source
from carbon_sensors.replay import GridClock
from carbon_sensors.signal import UNIT, IntensityReading, IntensitySignal
from carbon_sensors.timeutil import parse_duration, parse_utc

PROVIDER_ENV = "CARBON_AWARE_PROVIDER"
DEFAULT_ZONE = "DE"

Zone = Annotated[str, Query(min_length=1, max_length=64, description="grid zone, e.g. DE, GB, CAISO_NORTH")]
Start = Annotated[str | None, Query(description="ISO 8601 with zone; default: now (grid time under replay)")]


def configured_source() -> IntensitySource:
    """The source named by $CARBON_AWARE_PROVIDER (default: the embedded traces), built per request so
    replay settings of the moment apply; live providers share the per-process response cache."""
    return make_source(os.environ.get(PROVIDER_ENV, "trace"))


Source = Annotated[IntensitySource, Depends(configured_source)]
# Airflow's own check, as its core API uses it: a user from the session cookie or bearer token (else 401)
# who may see the UI at all (else 403).
REQUIRE_LOGIN = requires_access_view(AccessView.WEBSITE)


def status_of(error: CarbonAwareError) -> int:
    """Whose fault: the caller's (400/404), the upstream API's (502) or missing data (503)."""
    if isinstance(error, UnknownZoneError):
        return 404
    if isinstance(error, InvalidInputError):
        return 400
    if isinstance(error, ProviderError):
        return 502
    if isinstance(error, NoDataError):
        return 503
    return 500


async def _forecast(source: IntensitySource, zone: str, start: str | None, hours: float) -> IntensitySignal:
    begin = parse_utc(start, "start") if start else GridClock.from_env().now()
    return await product_forecast(source, zone, begin, hours)


app = FastAPI(
    title="Carbon intensity",
    description="Carbon intensity of grid zones for Carbon-Aware-Trainer",
    dependencies=[Depends(REQUIRE_LOGIN)],
    # FastAPI's docs routes sit outside the login dependency (and load Swagger from a CDN): none served
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@app.exception_handler(CarbonAwareError)
async def _carbon_error(request: Request, exc: CarbonAwareError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status_of(exc))


@app.exception_handler(RequestValidationError)
async def _bad_query(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": "InvalidInputError", "detail": detail}, status_code=400)


# The runs view and a run's page (carbon_operators.views): XCom behind the DAG's own access check.
app.include_router(views.router)


@app.get("/api/forecast")
async def forecast(
    source: Source, zone: Zone = DEFAULT_ZONE, hours: float = 24.0, start: Start = None
) -> Any:
    """The forecast the operators plan on (provider and our model blended, `plugin_forecast`) for `zone`,
    hourly from the hour containing `start` (default: now) for `hours` (IntensitySignal.to_dict())."""
    return (await _forecast(source, zone, start, hours)).to_dict()


@app.get("/api/plan")
async def plan(
    source: Source,
    deadline: Annotated[str, Query(description="ISO 8601 with zone: the job must end by then")],
    zone: Zone = DEFAULT_ZONE,
    duration: Annotated[str, Query(description="job length, e.g. 90min, 3h")] = "3h",
) -> Any:
    """The lowest-carbon window of `duration` that starts now or later and ends by `deadline` (Plan.to_dict())."""
    length = parse_duration(duration, "duration")
    end = parse_utc(deadline, "deadline")
    now = GridClock.from_env().now()
    if end <= now:
        raise InvalidInputError(f"deadline={end.isoformat()} is not after now ({now.isoformat()})")
    if end - now > pd.Timedelta(hours=plugin_source.MAX_HOURS):
        raise InvalidInputError(
            f"deadline={end.isoformat()} is more than {plugin_source.MAX_HOURS:g} h after now ({now.isoformat()})"
        )
    signal = await product_forecast(source, zone, now, (end - now) / pd.Timedelta(hours=1))
    return plan_window(signal, duration=length, deadline=end, earliest_start=now).to_dict()


@app.get("/", response_class=HTMLResponse)
async def page(
    source: Source, zone: Zone = DEFAULT_ZONE, hours: float = 24.0, start: Start = None
) -> HTMLResponse:
    """A self-contained page: the latest reading, the chart (history, forecast, now) and the forecast table
    (no scripts, no external assets). From an explicit `start`, the table alone."""
    try:
        reading = None if start else await plugin_source.latest(source, zone)
        signal = await _forecast(source, zone, start, hours)
        chart = ""
        if not start:
            chart = await views.intensity_figure(source, zone, hours, None, f"{zone}: carbon intensity")
    except CarbonAwareError as exc:
        body = f'<p class="error">{type(exc).__name__}: {html.escape(str(exc))}</p>'
        return HTMLResponse(render_page(zone, body), status_code=status_of(exc))
    return HTMLResponse(render_page(zone, _reading_html(reading) + chart + _forecast_html(signal)))


def _reading_html(reading: IntensityReading | None) -> str:
    if reading is None:
        return "<p>Forecast from an explicit start: no current reading.</p>"
    return (
        f'<p class="latest">Latest: <strong>{reading.value:.1f}</strong> {UNIT} ({reading.kind.value}) '
        f"for the period from {reading.period_start.isoformat()}, from {html.escape(reading.source)}</p>"
    )


def _forecast_html(signal: IntensitySignal) -> str:
    rows = "".join(
        f"<tr><td>{pd.Timestamp(str(ts)).isoformat()}</td><td>{_number(value)}</td></tr>"
        for ts, value in signal.values.items()
    )
    return (
        f"<h2>Forecast ({html.escape(signal.source)}, {signal.kind.value})</h2>"
        f"<table><thead><tr><th>Period start (UTC)</th><th>{UNIT}</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _number(value: Any) -> str:
    return "no data" if pd.isna(value) else f"{float(value):.1f}"


def render_page(zone: str, body: str) -> str:
    """The whole page around `body`; `zone` is escaped here, `body` must already be."""
    safe_zone = html.escape(zone, quote=True)
    form = (
        f'<form method="get" action="./"><label>Zone <input name="zone" value="{safe_zone}"></label> '
        "<button>Show</button></form>"
    )
    return views.page(f"Carbon intensity: {zone}", form + body)


class CarbonPlugin(AirflowPlugin):
    """Registered through the `airflow.plugins` entry point (provider-info plugins are skipped when lazy)."""

    name = "carbon_aware_trainer"
    # AirflowPlugin declares these as plain list attributes, so ClassVar would clash with the base class.
    fastapi_apps = [  # noqa: RUF012
        {"app": app, "url_prefix": PAGE_PATH.rstrip("/"), "name": "Carbon intensity"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Carbon intensity",
            "href": PAGE_PATH,
            "destination": "nav",
            "category": "browse",
            "url_route": "carbon-intensity",
        },
        {  # a tab on each DAG and on each task: the runs view
            "name": "Carbon runs",
            "href": f"{PAGE_PATH}{views.RUNS_PATH}?dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": "carbon-runs",
        },
        {
            "name": "Carbon runs",
            "href": f"{PAGE_PATH}{views.RUNS_PATH}?dag_id={{DAG_ID}}&task_id={{TASK_ID}}",
            "destination": "task",
            "url_route": "carbon-task-runs",
        },
    ]
