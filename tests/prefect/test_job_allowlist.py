"""The Prefect training `job` is fixed by the deployment: a run naming another file fails before importing it.

The hostile job is a real file that writes a marker when imported; the deployment is a real one on the test
server, and its flow run executes in-process (as a worker would run it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.deployments.runner import RunnerDeployment
from prefect.flow_engine import run_flow

from carbon_flows.jobs import require_allowed_job
from carbon_flows.training import carbon_aware_training
from carbon_sensors.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[2]
JOB = f"{REPO / 'flows' / 'carbon_training.py'}:tiny_regression_job"


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[str, Path]:
    """A job file that leaves a marker if anything imports it."""
    marker = tmp_path / "imported.marker"
    evil = tmp_path / "evil_job.py"
    evil.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def factory():\n    raise RuntimeError('the hostile factory ran')\n",
        encoding="utf-8",
    )
    return f"{evil}:factory", marker


def deployment_with(name: str, **parameters: Any) -> Any:
    deployment = carbon_aware_training.to_deployment(name=name, parameters=parameters)
    assert isinstance(deployment, RunnerDeployment)
    return deployment.apply()


def run_deployment_in_process(deployment_id: Any, parameters: dict[str, Any]) -> State[Any]:
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    state = run_flow(carbon_aware_training, flow_run=flow_run, parameters=parameters, return_type="state")
    assert isinstance(state, State)
    return state


def test_a_run_naming_a_job_the_deployment_does_not_allow_fails_before_importing_it(
    hostile: tuple[str, Path], tmp_path: Path
) -> None:
    job, marker = hostile
    deployment_id = deployment_with("carbon-allowlist-test", job=JOB)
    params = {"job": job, "allowed_jobs": [job], "checkpoint_dir": str(tmp_path / "ckpt"), "strategy": "none"}
    state = run_deployment_in_process(deployment_id, params)  # the run's own allowed_jobs cannot widen it
    assert state.is_failed(), state
    with pytest.raises(InvalidInputError, match="is not allowed by deployment 'carbon-allowlist-test'"):
        state.result()
    assert not marker.exists(), "the refused job file was imported"


def test_a_deployment_may_allow_several_jobs(hostile: tuple[str, Path], tmp_path: Path) -> None:
    job, marker = hostile
    deployment_id = deployment_with("carbon-allowlist-two", job=JOB, allowed_jobs=[job])
    state = run_deployment_in_process(deployment_id, {"job": job, "checkpoint_dir": str(tmp_path)})
    assert marker.exists(), "an allowed job is imported and called"
    assert state.is_failed() and "the hostile factory ran" in str(state.message)


def test_outside_a_deployment_allowed_jobs_still_limits_job(hostile: tuple[str, Path]) -> None:
    job, marker = hostile
    with pytest.raises(InvalidInputError, match="is not one of allowed_jobs"):
        require_allowed_job(job, [JOB])
    require_allowed_job(JOB, [JOB])
    require_allowed_job(job, None)  # the caller's own code: no import happens in this check either
    assert not marker.exists()
