"""Helpers shared by the Prefect tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment


def deploy(flow_: Flow[..., Any], name: str, parameters: dict[str, Any] | None = None) -> UUID:
    """Register `flow_` as a deployment (no work pool: the tests run its flow runs in-process)."""
    deployment = flow_.to_deployment(name=name, parameters=parameters)
    assert isinstance(deployment, RunnerDeployment)
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, UUID)
    return deployment_id
