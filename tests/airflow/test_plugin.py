"""The UI plugin's FastAPI app on replayed real data, its errors, the task link, and the plugin's discovery.

Airflow's login check needs the metadata database (revoked tokens), which these unit tests do not have: the
`client` fixture stands in for a logged-in user by overriding that one dependency. The real check (anonymous
401, a logged-in session 200) runs against a real api-server in tests/e2e/airflow/test_plugin_auth.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse
from airflow.models.xcom import XComModel
from airflow.sdk import DAG, BaseOperator
from airflow.sdk.execution_time.xcom import XCom
from airflow.serialization.serialized_objects import DagSerialization, OperatorSerialization
from airflow_fixtures import ReplayAt
from airflow_training_jobs import tiny_job
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from carbon_operators import views
from carbon_operators.links import CarbonIntensityLink
from carbon_operators.plugin import PROVIDER_ENV, REQUIRE_LOGIN, CarbonPlugin, app
from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_operators.window import CarbonWindowOperator
from carbon_sensors.forecast.combine import assemble_forecast
from carbon_sensors.planner import plan_window
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.replay import Replay
from carbon_sensors.timeutil import parse_utc

ROOT = Path(__file__).resolve().parents[2]
TRACE_NOW = "2023-06-01T00:00Z"
ENTRY_POINT = "carbon_operators.plugin:CarbonPlugin"


@pytest.fixture(autouse=True)
def offline_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The embedded traces unless a test names a provider; no replay unless a test asks for it."""
    monkeypatch.delenv(PROVIDER_ENV, raising=False)
    for name in Replay.starting_now(parse_utc(TRACE_NOW)).to_env():
        monkeypatch.delenv(name, raising=False)
    shared_cache().clear()
    yield
    shared_cache().clear()


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client whose every request counts as a logged-in user's (see the module docstring)."""
    app.dependency_overrides[REQUIRE_LOGIN] = lambda: None
    yield TestClient(app)
    app.dependency_overrides.clear()


def replayed_trace() -> TraceProvider:
    """What the plugin should be reading: the embedded data under the replay set in the environment."""
    return TraceProvider(replay=Replay.from_env())


# --- plugin object -----------------------------------------------------------------------------------------


def test_plugin_serves_the_app_under_carbon_and_adds_a_browse_view() -> None:
    assert CarbonPlugin.name == "carbon_aware_trainer"
    assert CarbonPlugin.fastapi_apps == [{"app": app, "url_prefix": "/carbon", "name": "Carbon intensity"}]
    nav, dag_tab, task_tab = (  # Airflow 3.3.2's own schema for the entries
        ExternalViewResponse.model_validate(view) for view in CarbonPlugin.external_views
    )
    assert (nav.category, nav.destination, nav.href) == ("browse", "nav", "/carbon/")
    assert (dag_tab.destination, dag_tab.href) == ("dag", "/carbon/runs?dag_id={DAG_ID}")
    assert (task_tab.destination, task_tab.href) == ("task", "/carbon/runs?dag_id={DAG_ID}&task_id={TASK_ID}")


@pytest.mark.parametrize("path", ["/", "/api/forecast", "/api/plan?deadline=2023-06-02T00:00Z"])
def test_anonymous_callers_get_401_before_any_handler_runs(path: str, httpserver: HTTPServer) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PROVIDER_ENV, "electricitymaps")
        env.setenv("ELECTRICITYMAPS_API_TOKEN", "em-anonymous-test-token")
        env.setenv("CARBON_AWARE_ELECTRICITYMAPS_URL", httpserver.url_for("/"))
        response = TestClient(app).get(path)
    assert response.status_code == 401 and response.json() == {"detail": "Not authenticated"}
    assert len(httpserver.log) == 0, "an anonymous request reached the upstream API"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_no_api_docs_are_served_to_anyone(path: str) -> None:
    """Reproduced: FastAPI's docs routes sat outside the login dependency, listing the API to anonymous callers."""
    response = TestClient(app).get(path)
    assert response.status_code == 404 and "/api/plan" not in response.text


# --- page and JSON API on replayed real data ---------------------------------------------------------------


def test_page_shows_the_latest_reading_and_a_24h_table(client: TestClient, replay_at: ReplayAt) -> None:
    replay_at(TRACE_NOW)
    response = client.get("/", params={"zone": "DE"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    latest = replayed_trace().latest("DE")
    assert f"<strong>{latest.value:.1f}</strong>" in text
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", text)
    source = replayed_trace()
    expected = assemble_forecast(source, "DE", source.now(), timedelta(hours=24)).values
    assert [(ts, float(v)) for ts, v in rows] == [
        (pd.Timestamp(str(t)).isoformat(), round(v, 1)) for t, v in expected.items()
    ]
    assert len(rows) == 24
    assert not re.search(r"<script|<link|\bsrc=|https?://", text), "the page must be self-contained"


def test_page_defaults_to_de_and_escapes_the_zone(client: TestClient, replay_at: ReplayAt) -> None:
    replay_at(TRACE_NOW)
    assert "Carbon intensity: DE" in client.get("/").text
    response = client.get("/", params={"zone": "<img onerror=x>"})
    assert response.status_code == 404
    assert "<img" not in response.text and "&lt;img onerror=x&gt;" in response.text


def test_forecast_endpoint_is_what_the_operators_plan_on(client: TestClient, replay_at: ReplayAt) -> None:
    replay_at(TRACE_NOW)
    response = client.get("/api/forecast", params={"zone": "GB", "hours": 6})
    assert response.status_code == 200
    body = response.json()
    source = replayed_trace()
    operators = assemble_forecast(source, "GB", source.now(), timedelta(hours=6))  # as the window operator
    assert body == replace(operators, replay=True).to_dict()
    assert body["zone"] == "GB" and body["replay"] is True and len(body["data"]) == 6
    assert body["source"] == operators.source and "calendar-lag" in body["source"]


def test_forecast_at_an_explicit_start_needs_no_replay(client: TestClient) -> None:
    start = "2023-03-01T12:00Z"
    response = client.get("/api/forecast", params={"zone": "DE", "hours": 3, "start": start})
    assert response.status_code == 200
    data = response.json()["data"]
    hourly = [(parse_utc(start) + timedelta(hours=h)).isoformat() for h in range(3)]
    assert [row["timestamp"] for row in data] == hourly
    page = client.get("/", params={"zone": "DE", "hours": 3, "start": start})
    assert page.status_code == 200 and "no current reading" in page.text


def test_plan_endpoint_is_the_planners_window(client: TestClient, replay_at: ReplayAt) -> None:
    replay_at(TRACE_NOW)
    deadline = "2023-06-02T00:00Z"
    response = client.get("/api/plan", params={"zone": "DE", "duration": "3h", "deadline": deadline})
    assert response.status_code == 200
    body = response.json()
    source = replayed_trace()
    now = source.now()
    expected = plan_window(
        assemble_forecast(source, "DE", now, parse_utc(deadline) - now),
        duration=timedelta(hours=3),
        deadline=parse_utc(deadline),
        earliest_start=now,
    )
    assert {k: body[k] for k in ("start", "end", "expected_intensity")} == {
        k: expected.to_dict()[k] for k in ("start", "end", "expected_intensity")
    }
    assert parse_utc(body["end"]) <= parse_utc(deadline)
    assert parse_utc(body["end"]) - parse_utc(body["start"]) == timedelta(hours=3)


# --- errors: typed message, status naming whose fault ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "error", "mentions"),
    [
        ("/api/forecast", {"zone": "XX"}, 404, "UnknownZoneError", "'XX'"),
        ("/api/plan", {"zone": "XX", "deadline": "2023-06-02T00:00Z"}, 404, "UnknownZoneError", "'XX'"),
        ("/api/plan", {"deadline": "2023-06-02T00:00"}, 400, "NaiveDatetimeError", "no time zone"),
        ("/api/plan", {"deadline": "2023-06-02T00:00Z", "duration": "3x"}, 400, "InvalidInputError", "'3x'"),
        ("/api/plan", {"deadline": "2023-05-31T00:00Z"}, 400, "InvalidInputError", "not after now"),
        ("/api/plan", {"deadline": "soon"}, 400, "InvalidInputError", "'soon'"),
        ("/api/plan", {}, 400, "InvalidInputError", "deadline"),
        ("/api/forecast", {"hours": "0"}, 400, "InvalidInputError", "hours=0"),
        ("/api/forecast", {"hours": "lots"}, 400, "InvalidInputError", "hours"),
    ],
)
def test_bad_input_is_a_client_error_with_the_typed_message(
    client: TestClient,
    replay_at: ReplayAt,
    path: str,
    params: dict[str, str],
    status: int,
    error: str,
    mentions: str,
) -> None:
    replay_at(TRACE_NOW)
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and mentions in body["detail"]


def test_without_replay_the_page_says_how_to_get_a_now(client: TestClient) -> None:
    response = client.get("/", params={"zone": "DE"})
    assert response.status_code == 503
    assert "NoDataError" in response.text and "CARBON_AWARE_REPLAY_START" in response.text


def test_provider_refusal_is_a_bad_gateway_without_the_secret(
    client: TestClient, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "em-plugin-secret-77d2"
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": "Invalid auth-token"}, status=401
    )
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(
        {"status": "error", "message": "Invalid auth-token"}, status=401
    )
    monkeypatch.setenv(PROVIDER_ENV, "electricitymaps")
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", token)
    monkeypatch.setenv("CARBON_AWARE_ELECTRICITYMAPS_URL", httpserver.url_for("/"))
    for response in (client.get("/", params={"zone": "DE"}), client.get("/api/forecast")):
        assert response.status_code == 502, response.text
        assert "AuthenticationError" in response.text and token not in response.text
    assert len(httpserver.log) >= 2, "the configured provider was asked over HTTP"


# --- the task link -----------------------------------------------------------------------------------------


@pytest.fixture
def return_value(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The task's XCom return value as the link reads it on the worker (empty: the task pushed none)."""
    value: dict[str, Any] = {}
    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: value if key == "return_value" else None)
    return value


def carbon_operators() -> list[BaseOperator]:
    return [
        CarbonIntensitySensor(task_id="green", zone="DE", max_intensity=300),
        CarbonWindowOperator(task_id="window", zone=["DE", "FR"], duration="2h"),
        CarbonAwareTrainingOperator(task_id="train", zone="DE", training_callable=tiny_job),
    ]


def test_every_carbon_operator_links_to_its_zone_page(return_value: dict[str, Any]) -> None:
    for op in carbon_operators():
        [link] = op.operator_extra_links
        assert isinstance(link, CarbonIntensityLink) and link.name == "Carbon intensity"
        run_page = f"/carbon/run?zone=DE&dag_id=d&run_id=r&task_id={op.task_id}"
        assert link.get_link(op, ti_key=_ti_key(op)) == run_page


@pytest.mark.parametrize(
    ("zone", "url"),
    [
        ("GB", "/carbon/run?zone=GB&dag_id=d&run_id=r&task_id=green"),
        (" US-CAL-CISO , DE", "/carbon/run?zone=US-CAL-CISO&dag_id=d&run_id=r&task_id=green"),
        ("A&B=C", "/carbon/run?zone=A%26B%3DC&dag_id=d&run_id=r&task_id=green"),
        (None, "/carbon/"),
        ("", "/carbon/"),
    ],
)
def test_link_quotes_the_first_zone(zone: str | None, url: str, return_value: dict[str, Any]) -> None:
    op = CarbonIntensitySensor(task_id="green", zone=zone, max_intensity=300)
    assert CarbonIntensityLink().get_link(op, ti_key=_ti_key(op)) == url


@pytest.mark.parametrize(("chosen", "linked"), [("GB", "GB"), ("FR", "DE"), (None, "DE")])
def test_multi_zone_window_links_to_the_zone_its_plan_chose(
    chosen: str | None, linked: str, return_value: dict[str, Any]
) -> None:
    op = CarbonWindowOperator(task_id="window", zone=["DE", "GB"], duration="2h")
    if chosen is not None:
        return_value["zone"] = chosen
    run_page = f"/carbon/run?zone={linked}&dag_id=d&run_id=r&task_id=window"
    assert CarbonIntensityLink().get_link(op, ti_key=_ti_key(op)) == run_page


def test_run_marks_draw_each_window_on_its_own_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [
        {"zone": "GB", "slots": [["2023-06-01T02:00Z", "2023-06-01T04:00Z"]]},
        {"zone": "DE", "threshold": 300},
        {"slots": [["2023-06-01T05:00Z", "2023-06-01T06:00Z"]]},  # names no zone: drawn on any
    ]
    monkeypatch.setattr(views, "_return_values", lambda *a, **k: [(v, None) for v in values])
    monkeypatch.setattr(XComModel, "deserialize_value", lambda xcom: xcom)
    de, gb = (views.run_marks(None, "d", "r", zone) for zone in ("DE", "GB"))  # type: ignore[arg-type]
    late = (pd.Timestamp("2023-06-01T05:00Z"), pd.Timestamp("2023-06-01T06:00Z"))
    assert de == views.RunMarks([late], 300.0)
    assert gb == views.RunMarks(
        [(pd.Timestamp("2023-06-01T02:00Z"), pd.Timestamp("2023-06-01T04:00Z")), late], None
    )


def test_links_survive_dag_serialisation() -> None:
    with DAG("carbon_links", schedule=None) as dag:
        ops = carbon_operators()
    for op in ops:
        encoded = OperatorSerialization.serialize_operator(op)
        assert encoded["_operator_extra_links"] == {"Carbon intensity": "_link_CarbonIntensityLink"}
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for task_id in ("green", "window", "train"):
        links = restored.get_task(task_id).operator_extra_links
        assert [(link.name, link.xcom_key) for link in links] == [
            ("Carbon intensity", "_link_CarbonIntensityLink")
        ]


def _ti_key(op: BaseOperator) -> Any:
    from airflow.sdk.types import TaskInstanceKey

    return TaskInstanceKey(dag_id="d", task_id=op.task_id, run_id="r", try_number=1, map_index=-1)


# --- discovery ---------------------------------------------------------------------------------------------


def test_pyproject_registers_the_plugin_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["airflow.plugins"] == {"carbon_aware_trainer": ENTRY_POINT}


def test_airflow_discovers_the_plugin_through_the_installed_entry_point(tmp_path: Path) -> None:
    installed = [ep.value for ep in importlib.metadata.entry_points(group="airflow.plugins")]
    assert ENTRY_POINT in installed, "entry point not in the installed metadata: reinstall (pip install -e .)"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "plugins", "--output", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    plugins: list[dict[str, Any]] = json.loads(done.stdout)
    [ours] = [p for p in plugins if p["name"] == "carbon_aware_trainer"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/carbon"]
    assert [v["href"] for v in ours["external_views"]] == [
        "/carbon/",
        "/carbon/runs?dag_id={DAG_ID}",
        "/carbon/runs?dag_id={DAG_ID}&task_id={TASK_ID}",
    ]
    assert "import error" not in done.stderr.lower()


def test_a_failing_xcom_lookup_links_to_the_first_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*, ti_key: Any, key: str) -> Any:
        raise RuntimeError("custom XCom backend down")

    monkeypatch.setattr(XCom, "get_value", broken)
    op = CarbonWindowOperator(task_id="window", zone=["DE", "GB"], duration="2h")
    assert CarbonIntensityLink().get_link(op, ti_key=_ti_key(op)).startswith("/carbon/run?zone=DE&")
