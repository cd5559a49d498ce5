"""End to end: a real `prefect server` (SQLite in a temp PREFECT_HOME) and a process worker run the example
deployment on a dirty grid (real DE data replayed as live); the run reschedules itself at the planned window,
and the scheduled run completes there with its report artifact. Every process started is stopped by PID.

The worker's replay has no wall start (as a user sets it up: a start and a speed), so the first flow run fixes
the replay epoch and must hand it to the run it schedules; before, that run restarted the replay and looped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pandas as pd
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect_processes import ProcessGroup, wait_until

from carbon_sensors.replay import ENV_SPEED, ENV_START, ENV_WALL_START, Replay

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
FLOWS = REPO / "flows"
BIN = Path(sys.executable).parent
POOL = "carbon-process"
# Real DE data, 2023-06-02: ~300 gCO2eq/kWh at 05:00, the day's low (155) at 11:00-12:00.
TRACE_START = pd.Timestamp("2023-06-02T05:00Z")
WINDOW = pd.Timestamp("2023-06-02T11:00Z")
DEADLINE = "2023-06-02T16:00Z"
SPEED = 900.0  # 15 trace minutes a wall second: the window comes 24 s after the replay starts
WORKER_REPLAY = {ENV_START: TRACE_START.isoformat(), ENV_SPEED: repr(SPEED)}  # no wall start: runs fix it


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    processes: ProcessGroup

    def client(self) -> SyncPrefectClient:
        return SyncPrefectClient(self.api)

    def cli(self, *args: str, cwd: Path = REPO) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prefect-home")
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    processes = ProcessGroup(home)
    port = api.rsplit(":", 1)[1].split("/")[0]
    try:
        processes.start(
            "server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
            env=env, cwd=home,
        )  # fmt: skip
        wait_until(lambda: _healthy(api), timeout=90, what=f"prefect server at {api}\n{processes.logs()}")
        env.pop(ENV_WALL_START, None)
        # the test pins the window to the day's known low: plan on the recorded future, asked for by name
        stack = Stack(api, {**env, **WORKER_REPLAY, "CARBON_AWARE_TRACE_FORECAST": "perfect"}, processes)
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("deploy", "--all", cwd=FLOWS)
        processes.start(
            "worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            env=stack.env, cwd=FLOWS,
        )  # fmt: skip
        yield stack
    finally:
        survivors = processes.stop()
        assert survivors == [], f"processes still running after stop: {survivors}"


def _final(client: SyncPrefectClient, run_id: object, timeout: float, logs: ProcessGroup) -> FlowRun:
    holder: dict[str, FlowRun] = {}

    def done() -> bool:
        holder["run"] = client.read_flow_run(run_id)  # type: ignore[arg-type]
        state = holder["run"].state
        logs.remember_descendants()
        return state is not None and state.is_final()

    wait_until(done, timeout=timeout, what=f"flow run {run_id} to finish\n{logs.logs()}")
    return holder["run"]


def test_dirty_grid_reschedules_to_window_and_completes_with_report(stack: Stack) -> None:
    with stack.client() as client:
        deployment = client.read_deployment_by_name("carbon-window-report/carbon-window-report")
        first = client.create_flow_run_from_deployment(
            deployment.id,  # resume_overhead 1 s: the default 30 s are 7.5 grid hours at this speed
            parameters={"deadline": DEADLINE, "max_in_process_wait": "5s", "resume_overhead": "1s"},
        )
        first = _final(client, first.id, 90, stack.processes)
        assert first.state is not None
        assert first.state.is_completed() and first.state.name == "Rescheduled", first.state
        assert "scheduled for" in (first.state.message or "")

        (second,) = _rescheduled_runs(client, deployment.id)
        assert second.id != first.id
        assert second.parameters["deadline"] == DEADLINE
        handed_on = (second.job_variables or {})[
            "env"
        ]  # the epoch the first run fixed, for the run it scheduled
        assert {k: handed_on[k] for k in WORKER_REPLAY} == WORKER_REPLAY
        replay = Replay.from_env(dict(handed_on))
        assert replay is not None and first.start_time is not None
        assert pd.Timestamp(first.start_time) <= replay.wall_start  # fixed by the first run, not by the test
        # The epoch is fixed when the first run reads the grid and planning takes a few wall s (an hour or so
        # of trace time at this speed), so the plan may start anywhere in the day's low.
        planned = pd.Timestamp(_between(first.state.message or "", "for the window at ", " ("))
        assert WINDOW <= planned <= WINDOW + timedelta(hours=1), planned
        planned_wall = replay.wall_time(planned)
        assert second.expected_start_time is not None
        assert abs(pd.Timestamp(second.expected_start_time) - planned_wall) < pd.Timedelta(seconds=2)
        assert f"carbon-aware:deadline:{pd.Timestamp(DEADLINE).isoformat()}" in second.tags

        second = _final(client, second.id, 120, stack.processes)
        assert second.state is not None and second.state.is_completed() and second.state.name == "Completed"
        assert second.start_time is not None and pd.Timestamp(second.start_time) >= planned_wall
        assert [r.id for r in _rescheduled_runs(client, deployment.id)] == [second.id]  # no loop
        assert len([t for t in second.tags if t.startswith("carbon-aware:deadline:")]) == 1

        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[second.id]))
        )
        assert artifact.key == "carbon-window-report" and artifact.type == "markdown"
        text = str(artifact.data)
        assert "# Carbon window report: DE" in text
        # The scheduled run re-plans when it starts (a few wall seconds late = an hour or so of trace time at
        # this speed); it must find the grid clean and start at once, inside the planned low.
        started_grid = replay.trace_time(pd.Timestamp(second.start_time))
        window_start = pd.Timestamp(_row(text, "Window start (grid time)"))
        assert WINDOW <= window_start <= started_grid + pd.Timedelta(minutes=30), (window_start, started_grid)
        expected = float(_row(text, "Expected intensity"))
        assert expected < 200 and expected == float(
            _row(text, "Run-now intensity")
        )  # clean, and starting now
        assert _row(text, "Deadline (finish by)") == pd.Timestamp(DEADLINE).isoformat()
        assert "now is the best window" in text


# Real DE data, late November 2023: above 300 gCO2eq/kWh for days on end.
WINTER = pd.Timestamp("2023-11-26T00:00Z")


def test_training_deployment_pauses_by_checkpoint_and_resumes_in_a_new_run(
    stack: Stack, tmp_path: Path
) -> None:
    """The example training deployment with the real ThresholdStrategy, in its own replayed environment.

    Dirty grid: the first run trains one step, checkpoints, schedules the next run at the end of the
    strategy's 3 h pause (3 wall s at 3600x) and ends; the next run, in a new process with the same job
    variables, resumes from the checkpoint (the max pause has passed) and completes with its artifacts.
    """
    replay = Replay(WINTER, pd.Timestamp(datetime.now(UTC)), 3600.0)
    params = {
        "checkpoint_dir": str(tmp_path), "deadline": "2023-11-30T00:00Z", "expected_duration": None,
        "pause_above": 300.0, "resume_below": 250.0, "max_pause": "3h", "strategy_options": {"recheck": "3h"},
        "max_in_process_pause": "1s", "decision_refresh_seconds": 60.0, "artifact_prefix": "e2e-training",
    }  # fmt: skip
    with stack.client() as client:
        deployment = client.read_deployment_by_name("carbon-aware-training/carbon-aware-training")
        first = client.create_flow_run_from_deployment(
            deployment.id, parameters=params, job_variables={"env": replay.to_env()}
        )
        first = _final(client, first.id, 120, stack.processes)
        assert first.state is not None
        assert first.state.is_completed() and first.state.name == "Rescheduled", first.state

        (second,) = _rescheduled_runs(client, deployment.id)
        assert second.job_variables == {"env": replay.to_env()}
        checkpoint = Path(second.parameters["resume_from"])
        assert tmp_path in checkpoint.parents and checkpoint.is_file()  # in checkpoint_dir (per training)
        paused_since = pd.Timestamp(second.parameters["paused_since"])
        assert second.expected_start_time is not None
        resume_grid = replay.trace_time(pd.Timestamp(second.expected_start_time))
        assert abs(resume_grid - (paused_since + timedelta(hours=3))) < timedelta(minutes=1)

        second = _final(client, second.id, 120, stack.processes)
        assert second.state is not None and second.state.name == "Completed", second.state
        found = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[second.id]))
            )
        }
    training = f"e2e-training-{first.id.hex[:12]}"  # the first run's id names the whole training's artifacts
    assert set(found) == {f"{training}-report", f"{training}-epochs", f"{training}-progress"}
    report = str(found[f"{training}-report"].data)
    assert "- **status**: completed" in report and "- **steps done**: 48" in report
    (decision,) = [line for line in report.splitlines() if line.startswith("- **decision**:")]
    assert "max pause of 0 days 03:00:00" in decision, decision  # resumed by the pause clock it was handed
    assert "| Pauses | 1 |  |" in report and "| Grid zone | DE |  |" in report
    assert float(_row(report, "Average intensity")) > 300
    assert [r["epoch"] for r in json.loads(str(found[f"{training}-epochs"].data))] == [0, 1, 2]
    assert float(str(found[f"{training}-progress"].data)) == 100.0


def _rescheduled_runs(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    """The runs of `deployment_id` that a carbon-aware run scheduled for later."""
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            tags=FlowRunFilterTags(all_=["carbon-aware:rescheduled"]),
        )
    )


def _between(text: str, before: str, after: str) -> str:
    """The part of `text` between the first `before` and the next `after`."""
    return text.split(before, 1)[1].split(after, 1)[0]


def _row(markdown: str, label: str) -> str:
    """The value cell of the report row `label`."""
    (line,) = [ln for ln in markdown.splitlines() if ln.startswith(f"| {label} |")]
    return line.split("|")[2].strip()
