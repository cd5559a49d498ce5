"""Core events (strategy fallbacks, runner resumes and decisions) reach the Prefect run's logs, not only stdout."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from uuid import UUID

import pandas as pd
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler

import carbon_flows  # noqa: F401  (importing the collection hooks the core's logs up)
from carbon_sensors.decision import Action
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ThresholdStrategy


@flow
def decide_without_data() -> UUID:
    """A real strategy on a trace with no 'now' (no replay): its fallback is logged by the core."""
    strategy = ThresholdStrategy(
        TraceProvider(), "DE", pause_above=250, resume_below=200, max_pause=timedelta(hours=1)
    )
    decision = strategy.decide(
        pd.Timestamp("2030-01-01T00:00Z"), remaining_work=timedelta(hours=1), deadline=None
    )
    assert decision.action is Action.RUN and decision.fallback
    logging.getLogger("carbon_sensors.training.runner").info("resumed from the checkpoint at step 7")
    ctx = FlowRunContext.get()
    assert ctx is not None and ctx.flow_run is not None
    return ctx.flow_run.id


def test_core_warnings_and_infos_land_in_the_flow_run_logs() -> None:
    run_id = decide_without_data()
    APILogHandler().flush()
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        for _ in range(40):
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            messages = [log.message for log in logs]
            if any("resumed from the checkpoint" in m for m in messages):
                break
            time.sleep(0.25)
    assert any("ThresholdStrategy: DE failed" in m and "falling back to run" in m for m in messages), messages
    assert any("resumed from the checkpoint at step 7" in m for m in messages), messages
    assert len([m for m in messages if "resumed from the checkpoint" in m]) == 1  # once, not per handler
