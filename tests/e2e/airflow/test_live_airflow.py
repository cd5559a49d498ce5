"""A real Airflow: api-server, scheduler (LocalExecutor), dag-processor and triggerer, on PostgreSQL.

The nightly retraining DAG is triggered through the REST API; the sensor is seen `deferred` through the API
(waiting in the triggerer, no worker held), the run is seen finishing `success`, and the training's emissions
report is read back through the API. Beside it, a threshold-paused training with a tight deadline
(`carbon_e2e_tight_deadline.py`) must be woken by its deadline guard, real scheduler latency included, and finish
by its deadline without pausing again. Every process started is stopped by its process group, then by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest
from airflow_e2e_support import DAGS, replay_env

from carbon_sensors.replay import Replay

pytestmark = pytest.mark.slow

DAG_ID = "carbon_nightly_retraining"
BIN = Path(sys.executable).parent
# The replayed grid stays dirty until this long after the processes start, then turns green (see below).
GREEN_AFTER_SECONDS = 60.0
STARTUP_LIMIT_SECONDS = 45.0
TIGHT_DAG_ID = "carbon_e2e_tight_deadline"
# The tight run's deadline is this far ahead (wall seconds, x600 in grid time) when it is triggered; its guard
# keeps 40 wall s for the wake-up, and its task needs up to ~20 s to start on a loaded machine.
TIGHT_DEADLINE_SECONDS = 80.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Airflow:
    """The four Airflow components as process groups, with their logs in the temporary home."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.seen_pids: set[int] = set()

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(BIN / "airflow"), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def note_descendants(self) -> None:
        """Remember every process the components spawned (LocalExecutor workers, task supervisors)."""
        for proc in self.procs.values():
            try:
                self.seen_pids.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
            self.seen_pids.add(proc.pid)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> list[int]:
        """SIGTERM each process group, wait, SIGKILL what is left; returns PIDs still alive (should be none)."""
        self.note_descendants()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in self.seen_pids:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.5)
        return [
            pid
            for pid in self.seen_pids
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
        ]


@pytest.fixture
def airflow(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Airflow, httpx.Client]]:
    home, dags = tmp_path / "home", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(DAGS / f"{DAG_ID}.py", dags)
    shutil.copy(Path(__file__).parent / f"{TIGHT_DAG_ID}.py", dags)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url,
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "carbon-e2e-jwt-secret-not-for-production",
        "AIRFLOW__API__SECRET_KEY": "carbon-e2e-secret-key-not-for-production",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "CARBON_AWARE_POLL_SECONDS": "1",
        "CARBON_AWARE_EPOCHS": "2",
        "CARBON_AWARE_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "CARBON_E2E_TIGHT_CHECKPOINTS": str(tmp_path / "tight-checkpoints"),
        "CARBON_E2E_TIGHT_OVERHEAD": "40s",
        "PYTHONWARNINGS": "ignore",
    }
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    # DE 2023-10-20 is dirty (> 250 gCO2eq/kWh) for days before 12:00 and green from 12:00: the sensor holds
    # until GREEN_AFTER_SECONDS after start, wherever in that window the run begins.
    env.update(replay_env("2023-10-20T12:00Z", speed=600, starts_in_seconds=GREEN_AFTER_SECONDS))
    af = Airflow(home, env)
    try:
        af.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
        af.start("scheduler", "scheduler")
        af.start("dag-processor", "dag-processor")
        af.start("triggerer", "triggerer")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v2", timeout=10) as client:
            yield af, client
    finally:
        survivors = af.stop()
        assert survivors == [], f"processes still alive after stop: {survivors}"


def wait_for(what: str, probe: Any, limit: float, af: Airflow, every: float = 0.5) -> Any:
    """Poll `probe()` until it returns something truthy; fail with `what` after `limit` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        af.check_alive()
        af.note_descendants()
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


def test_real_airflow_defers_then_succeeds_and_serves_the_report(
    airflow: tuple[Airflow, httpx.Client],
) -> None:
    af, api = airflow
    started = time.monotonic()
    wait_for("the api-server", lambda: api.get("/version").status_code == 200, 90, af)
    wait_for(f"the DAG {DAG_ID} to be parsed", lambda: api.get(f"/dags/{DAG_ID}").status_code == 200, 90, af)
    if time.monotonic() - started > STARTUP_LIMIT_SECONDS:
        pytest.fail(
            f"startup took {time.monotonic() - started:.0f}s: the replayed grid is green too soon to hold"
        )

    created = api.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    ti_url = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"

    def states() -> dict[str, str | None]:
        response = api.get(ti_url)
        return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}

    seen: dict[str, set[str | None]] = {}

    def deferred_task() -> str | None:
        for task, state in states().items():
            seen.setdefault(task, set()).add(state)
            if state == "deferred":
                return task
        return None

    holder = wait_for("a task in state 'deferred'", deferred_task, GREEN_AFTER_SECONDS + 60, af, every=0.3)
    assert holder == "wait_for_green_grid"

    def finished() -> str | None:
        state = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("the run to finish", finished, 240, af) == "success", json.dumps(states())
    assert set(states().values()) == {"success"}

    entry = api.get(f"{ti_url}/retrain/xcomEntries/return_value", params={"deserialize": True})
    assert entry.status_code == 200, entry.text
    value = entry.json()["value"]
    result = json.loads(value) if isinstance(value, str) else value
    assert result["status"] == "completed"
    assert result["steps_done"] == 2 * 57
    report = result["report"]
    assert report["zone"] == "DE"
    assert report["energy_kwh"] > 0
    assert report["emissions_g"] > 0
    assert report["intensity_sources"] == ["electricitymaps-2023:lifecycle"]
    assert pd.Timestamp(report["started_at"]) >= pd.Timestamp("2023-10-20T12:00Z")  # after the hold

    sensor = api.get(f"{ti_url}/wait_for_green_grid/xcomEntries/return_value", params={"deserialize": True})
    sensor_value = sensor.json()["value"]
    reading = (json.loads(sensor_value) if isinstance(sensor_value, str) else sensor_value)["reading"]
    assert reading["value"] <= 250.0

    # The UI plugin (entry point `airflow.plugins`): its link reached the task, and its app is served.
    links = api.get(f"{ti_url}/retrain/links").json()["extra_links"]
    link = links["Carbon intensity"]  # the task's run page (c8af229)
    assert (
        link.startswith("/carbon/run?zone=DE&dag_id=carbon_nightly_retraining&") and "task_id=retrain" in link
    )
    page = httpx.get(str(api.base_url.copy_with(path="/carbon/")), params={"zone": "DE"}, timeout=30)
    assert page.status_code == 200 and "DE" in page.text

    # The tight-deadline training: one pause, cut by the guard at the latest start; woken (through the
    # triggerer, the scheduler and a worker), it trained to the end by its deadline and never paused again.
    replay = Replay.from_env(af.env)
    assert replay is not None
    deadline = replay.trace_time() + pd.Timedelta(seconds=TIGHT_DEADLINE_SECONDS) * replay.speed
    assert api.get(f"/dags/{TIGHT_DAG_ID}").status_code == 200
    tight = api.post(
        f"/dags/{TIGHT_DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"deadline": deadline.isoformat()}},
    )
    assert tight.status_code == 200, tight.text
    tight_run_id = tight.json()["dag_run_id"]

    def tight_finished() -> str | None:
        state = api.get(f"/dags/{TIGHT_DAG_ID}/dagRuns/{tight_run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("the tight-deadline run to finish", tight_finished, 120, af) == "success"
    entry = api.get(
        f"/dags/{TIGHT_DAG_ID}/dagRuns/{tight_run_id}/taskInstances/train/xcomEntries/return_value",
        params={"deserialize": True},
    )
    value = entry.json()["value"]
    trained = json.loads(value) if isinstance(value, str) else value
    assert trained["status"] == "completed" and trained["steps_done"] == 300
    assert trained["deferrals"] == 1 and trained["report"]["pauses"] == 1, trained["report"]
    assert trained["report"]["paused_seconds"] > 0
    assert trained["decision"]["reason"].startswith("deadline guard:"), trained["decision"]
    assert pd.Timestamp(trained["report"]["finished_at"]) <= deadline
