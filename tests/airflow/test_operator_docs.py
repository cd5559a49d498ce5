"""Every operator parameter is documented in its class docstring (`:param name:`), as the providers do."""

from __future__ import annotations

import inspect

import pytest
from airflow.sdk import BaseOperator

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_operators.window import CarbonWindowOperator


@pytest.mark.parametrize(
    "operator", [CarbonIntensitySensor, CarbonWindowOperator, CarbonAwareTrainingOperator]
)
def test_every_parameter_is_documented(operator: type[BaseOperator]) -> None:
    parameters = inspect.signature(operator.__init__).parameters.values()
    names = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert names, f"{operator.__name__}: no keyword parameters found"
    assert [n for n in names if f":param {n}:" not in (operator.__doc__ or "")] == []
