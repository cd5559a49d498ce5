"""Schedule a new run of the current deployment for later, so this run can end and free its infrastructure.

Idempotent: the key names this run and the target time, so a retried flow run (or a task retried inside it)
finds the run it already scheduled instead of scheduling a second one. Under replay the scheduled run gets this
run's replay epoch in its environment (job variables), so it wakes on the same grid clock: without it, a run
scheduled for the window restarted the replay, found the dirty hour again and rescheduled itself forever.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.states import Completed

from carbon_sensors.replay import replay_handoff
from carbon_sensors.timeutil import parse_utc

RESCHEDULED = "Rescheduled"
RESCHEDULED_TAG = "carbon-aware:rescheduled"


def run_tags() -> list[str]:
    """This flow run's tags ([] outside one): what a rescheduled run inherits from the runs before it."""
    ctx = FlowRunContext.get()
    return list(ctx.flow_run.tags) if ctx is not None and ctx.flow_run is not None else []


def tag_times(prefix: str, what: str) -> list[pd.Timestamp]:
    """The times this run's tags carry after `prefix` (a deadline, a pause start: handed on by earlier runs)."""
    return [parse_utc(tag.removeprefix(prefix), what) for tag in run_tags() if tag.startswith(prefix)]


def current_deployment_run() -> FlowRunContext | None:
    """The flow-run context when this code runs inside a flow run of a deployment, else None."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or ctx.flow_run.deployment_id is None:
        return None
    return ctx


def reschedule_current_run(
    at_wall: pd.Timestamp,
    *,
    parameter_overrides: Mapping[str, Any] | None = None,
    extra_tags: Sequence[str] = (),
) -> FlowRun:
    """Schedule a run of this run's deployment at `at_wall`: same parameters (plus overrides), queue, job variables.

    A run started with its own job variables (an environment, resources) continues with them, plus the
    replay settings of this run (if any) in its environment.

    Overrides only apply to parameters the flow declares (e.g. an absolute deadline, a checkpoint to resume),
    so a flow without them is rescheduled unchanged.
    """
    ctx = current_deployment_run()
    if ctx is None:
        raise RuntimeError("reschedule_current_run() needs a flow run started from a deployment")
    flow_run = ctx.flow_run
    assert flow_run is not None and flow_run.deployment_id is not None
    declared = inspect.signature(ctx.flow.fn).parameters if ctx.flow is not None else {}
    parameters = dict(flow_run.parameters)
    parameters.update({k: v for k, v in (parameter_overrides or {}).items() if k in declared})
    job_variables = dict(flow_run.job_variables or {})
    if replay := replay_handoff():
        job_variables["env"] = {**job_variables.get("env", {}), **replay}
    scheduled = run_deployment(
        flow_run.deployment_id,
        parameters=parameters,
        scheduled_time=at_wall.to_pydatetime(),
        timeout=0,
        as_subflow=False,
        tags=sorted({*flow_run.tags, RESCHEDULED_TAG, *extra_tags}),
        idempotency_key=f"carbon-aware/{flow_run.id}/{at_wall.isoformat()}",
        work_queue_name=flow_run.work_queue_name,
        job_variables=job_variables or None,
    )
    assert isinstance(scheduled, FlowRun)  # called from sync code: the sync dispatch returns the run
    return scheduled


def rescheduled_state(message: str) -> State[Any]:
    """The final state of a run that handed its work to a later run: completed, named so it reads as such."""
    return Completed(name=RESCHEDULED, message=message)
