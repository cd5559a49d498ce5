"""Which training job a flow run may name: in a deployment, only the ones its author fixed.

The training flow's `job` is an import path ('file.py:factory', 'package.module:factory') that is imported
and called on the worker. Anyone who may start a deployment with custom parameters could otherwise point it
at any file and run its code. So in a run of a deployment, `job` must be the deployment's own `job` or one of
its `allowed_jobs`, as stored on the deployment (`parameters:` in prefect.yaml), which a flow run cannot
change: the run's own `allowed_jobs` value is ignored. Outside a deployment the caller runs their own code;
`allowed_jobs`, when given, still limits `job`. The check compares strings, so a refused job is never imported.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect.client.orchestration import get_client

from carbon_flows.rescheduling import current_deployment_run
from carbon_sensors.errors import InvalidInputError


def require_allowed_job(job: str, allowed_jobs: Sequence[str] | None) -> None:
    """InvalidInputError unless `job` is one the deployment (or, outside one, `allowed_jobs`) allows."""
    ctx = current_deployment_run()
    if ctx is None:
        if allowed_jobs is not None and job not in allowed_jobs:
            raise InvalidInputError(f"job={job!r} is not one of allowed_jobs={list(allowed_jobs)}")
        return
    assert ctx.flow_run is not None and ctx.flow_run.deployment_id is not None
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(ctx.flow_run.deployment_id)
    stored = deployment.parameters or {}
    allowed = [j for j in [stored.get("job"), *(stored.get("allowed_jobs") or [])] if isinstance(j, str)]
    if job not in allowed:
        raise InvalidInputError(
            f"job={job!r} is not allowed by deployment {deployment.name!r}, which allows {allowed}; its "
            "author fixes the jobs a run may name with `job` and `allowed_jobs` in the deployment's parameters"
        )
