"""The plugin's runs view on a finished `dag.test()` run: its chart data is the XCom of our operators, field by
field; anonymous callers get 401; a run's page (the task link's target) draws that run's sensor threshold.

Replay of the embedded real Electricity Maps 2023 data: DE at 2023-06-02 11:00 is about 155 gCO2eq/kWh, below
the sensor's 400, so the sensor releases at once and the training runs straight through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_e2e_support import load_dag, replay_env, xcoms
from fastapi.testclient import TestClient

from carbon_operators.plugin import app
from carbon_operators.views import run_url
from carbon_sensors.units import duration_text, energy_text, mass_text

pytestmark = pytest.mark.slow

DAG_ID = "carbon_runs_view"
DAG_SOURCE = f'''
"""A carbon sensor, then a tiny carbon-aware training."""
from datetime import UTC, datetime

import torch
from airflow.sdk import DAG
from torch.utils.data import DataLoader, TensorDataset

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_sensors.training import TrainingJob


def tiny_job() -> TrainingJob:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    model = torch.nn.Linear(4, 1)
    loader = DataLoader(data, batch_size=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    return TrainingJob(model, optimizer, loader, loss_fn=torch.nn.functional.mse_loss, epochs=2)


with DAG("{DAG_ID}", schedule=None, start_date=datetime(2023, 1, 1, tzinfo=UTC)) as dag:
    wait = CarbonIntensitySensor(
        task_id="wait", zone="DE", max_intensity=400, deadline="2023-06-02T20:00Z", deferrable=False,
        poke_interval=1,
    )
    train = CarbonAwareTrainingOperator(
        task_id="train", training_callable=tiny_job, zone="DE", deadline="2023-06-02T20:00Z",
        strategy_kwargs={{"pause_above": 500, "resume_below": 400, "max_pause": "2h"}}, decision_refresh_seconds=0.0,
    )
    wait >> train
'''


@pytest.fixture(scope="module")
def finished_runs(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two finished runs of the DAG (from a temporary bundle, as `dag.test()` syncs it), oldest first; the
    replay stays set for the tests (the pages' "now")."""
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / f"{DAG_ID}.py").write_text(DAG_SOURCE)
    config = [
        {"name": "carbon-runs-view", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
         "kwargs": {"path": str(bundle)}},
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(config))
        dag = load_dag(str(bundle / f"{DAG_ID}.py"))
        for key, value in replay_env("2023-06-02T11:00Z", speed=60, starts_in_seconds=0).items():
            env.setenv(key, value)
        runs = [dag.test(), dag.test()]
        assert [r.state for r in runs] == ["success", "success"]
        yield [r.run_id for r in runs]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def admin_token() -> str:
    """A JWT for an admin of the configured auth manager (simple by default), as its login would issue."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


def test_runs_view_serves_the_training_xcom_of_each_run_and_refuses_anonymous_callers(
    finished_runs: list[str], client: TestClient
) -> None:
    anonymous = client.get("/api/runs", params={"dag_id": DAG_ID})
    assert anonymous.status_code == 401
    assert client.get("/runs", params={"dag_id": DAG_ID}).status_code == 401

    auth = {"Authorization": f"Bearer {admin_token()}"}
    body = client.get("/api/runs", params={"dag_id": DAG_ID}, headers=auth).json()
    rows = body["runs"]
    # newest first, and only the training's XCom (the sensor's is no training report)
    assert [r["run_id"] for r in rows] == finished_runs[::-1]
    for row in rows:
        train = xcoms(DAG_ID, row["run_id"])["train"]
        report = train["report"]
        assert row["task_id"] == "train" and row["map_index"] == -1 and row["state"] == "success"
        assert row["status"] == train["status"] == "completed"
        assert row["zone"] == report["zone"] == "DE"
        assert row["emissions_g"] == report["emissions_g"] > 0
        assert row["avoided_g"] == report["avoided_g"]
        assert row["energy_kwh"] == report["energy_kwh_with_pue"] > 0
        assert row["pauses"] == report["pauses"] and row["paused_seconds"] == report["paused_seconds"]
        assert row["deferrals"] == train["deferrals"]
        assert row["url"] == run_url(DAG_ID, row["run_id"], "train")

    page = client.get("/runs", params={"dag_id": DAG_ID, "task_id": "train"}, headers=auth)
    assert page.status_code == 200 and "<svg" in page.text
    links = re.findall(r'<a href="([^"]+)" target="_top">', page.text)
    assert links == [row["url"].replace("&", "&amp;") for row in rows]
    # the table in units people read (Wh or kWh, g or kg CO2eq, 3 significant digits); the API keeps floats
    cells = re.findall(
        r"</a></td><td>train</td><td>completed</td><td>DE</td>((?:<td>[^<]*</td>){4})", page.text
    )
    assert [re.findall(r"<td>([^<]*)</td>", c) for c in cells] == [
        [mass_text(r["emissions_g"]), mass_text(r["avoided_g"]), energy_text(r["energy_kwh"]),
         f"{r['pauses']} ({duration_text(r['paused_seconds'])})"]
        for r in rows
    ]  # fmt: skip
    assert not any(
        repr(r[k]) in page.text for r in rows for k in ("emissions_g", "energy_kwh")
    )  # no raw floats
    assert not re.search(r"<script|<link|https?://", page.text), "the page must be self-contained"


def test_a_runs_page_draws_its_sensors_threshold(finished_runs: list[str], client: TestClient) -> None:
    params = {"zone": "DE", "dag_id": DAG_ID, "run_id": finished_runs[0], "task_id": "wait"}
    assert client.get("/run", params=params).status_code == 401
    page = client.get("/run", params=params, headers={"Authorization": f"Bearer {admin_token()}"})
    assert page.status_code == 200 and "<svg" in page.text
    threshold = xcoms(DAG_ID, finished_runs[0])["wait"]["threshold"]
    assert f"Sensor threshold: {threshold:.1f} gCO2eq/kWh." in page.text
    assert f"threshold {threshold:,.0f} gCO2eq/kWh" in page.text  # the chart's legend
