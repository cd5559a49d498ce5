"""`CarbonIntensitySensor(mode="reschedule")` end to end through `dag.test()`: it frees its slot between pokes.

Replay of the embedded real Electricity Maps 2023 data: DE is above 250 gCO2eq/kWh from 2023-06-04 17:00 until
2023-06-05 08:00 (337.77 at 03:00, 257.01 at 07:00) and below it from 08:00 to 15:00 (225.41, then 186-222).
The DAG lives in a temporary DAG bundle: `dag.test()` syncs the DAG from a bundle to the database first.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from airflow_e2e_support import load_dag, replay_env, xcoms

from carbon_sensors import embedded
from carbon_sensors.replay import Replay

pytestmark = pytest.mark.slow

THRESHOLD = 250.0
GREEN_FROM = pd.Timestamp("2023-06-05T08:00Z")
SPEED = 1800.0  # half an hour of grid time per wall second: the green 08:00-15:00 lasts 14 s
# Wall seconds of dirty grid before 08:00 for dag.test to reach its first poke (about 7 s on a cold start:
# the in-process execution API loads then). The trace is dirty for 30 s of wall time before 08:00; 20 s
# leaves room for a slow machine.
DIRTY_SECONDS = 20.0

DAG_SOURCE = f'''
"""One carbon sensor in reschedule mode (no worker slot held between pokes)."""
from datetime import UTC, datetime

from airflow.sdk import DAG

from carbon_operators.sensors import CarbonIntensitySensor

with DAG("carbon_sensor_reschedule", schedule=None, start_date=datetime(2023, 1, 1, tzinfo=UTC)) as dag:
    CarbonIntensitySensor(
        task_id="wait_for_green_grid",
        zone="DE",
        max_intensity={THRESHOLD},
        deadline="2023-06-05T20:00:00+00:00",
        on_deadline="fail",
        mode="reschedule",
        deferrable=False,
        poke_interval=2,
    )
'''


def test_reschedule_mode_frees_the_slot_while_dirty_and_succeeds_on_green(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "carbon_sensor_reschedule.py").write_text(DAG_SOURCE)
    bundles = [
        {
            "name": "carbon-reschedule-e2e",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(bundle)},
        },
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},
        },
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    dag = load_dag(str(bundle / "carbon_sensor_reschedule.py"))  # an absolute path: not under dags/
    replay_settings = replay_env(GREEN_FROM.isoformat(), speed=SPEED, starts_in_seconds=DIRTY_SECONDS)
    for key, value in replay_settings.items():
        monkeypatch.setenv(key, value)
    replay = Replay.from_env(replay_settings)
    assert replay is not None

    run = dag.test()

    assert run.state == "success"
    ti = run.get_task_instance("wait_for_green_grid")
    assert ti is not None and ti.state == "success"
    assert ti.try_number == 1  # a reschedule is not a retry
    poked_at = reschedule_starts(ti.id)
    assert poked_at, "the sensor never rescheduled: its first poke already saw a green grid"
    first_poke = replay.trace_time(poked_at[0])
    assert embedded.load("DE").value_at(first_poke) > THRESHOLD  # released the slot on a dirty grid

    wait = xcoms(dag.dag_id, run.run_id)["wait_for_green_grid"]
    assert wait["status"] == "green"
    assert wait["zone"] == "DE"
    assert wait["threshold"] == THRESHOLD
    assert wait["replay"] is True
    reading = wait["reading"]
    assert reading["zone"] == "DE"
    assert reading["replay"] is True
    released = pd.Timestamp(reading["period_start"])
    assert released >= GREEN_FROM > first_poke
    assert reading["value"] == pytest.approx(embedded.load("DE").value_at(released))
    assert reading["value"] <= THRESHOLD


def reschedule_starts(ti_id: UUID) -> list[pd.Timestamp]:
    """Wall start times of the pokes that ended in a reschedule, oldest first, from the metadata database."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskReschedule).filter(TaskReschedule.ti_id == ti_id).all()
        return sorted(pd.Timestamp(row.start_date) for row in rows)
