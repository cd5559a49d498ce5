"""Every flow and task parameter is described in its docstring, read as Prefect reads it (Google style).

Why Google style here and `:param` on the Airflow operators: Prefect parses a flow's "Args:" section into the
descriptions its UI shows beside each parameter of a deployment's run form.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.callables import parameter_docstrings, parameter_schema
from prefect.utilities.importtools import import_object

from carbon_flows.training import carbon_aware_training, train_carbon_aware
from carbon_flows.wait import wait_for_low_carbon

EXAMPLE = Path(__file__).resolve().parents[2] / "flows" / "carbon_window_report.py"
window_report = import_object(f"{EXAMPLE}:carbon_window_report")
summary_task = import_object(f"{EXAMPLE}:daily_intensity_summary")


@pytest.mark.parametrize(
    "fn",
    [
        carbon_aware_training.fn,
        train_carbon_aware.fn,
        wait_for_low_carbon.fn,
        window_report.fn,
        summary_task.fn,
    ],
)
def test_every_parameter_is_described(fn: Callable[..., Any]) -> None:
    described = parameter_docstrings(inspect.getdoc(fn))
    names = list(inspect.signature(fn).parameters)
    assert len(names) >= 3
    assert [n for n in names if not described.get(n)] == []


def test_the_deployment_form_shows_the_descriptions() -> None:
    properties = parameter_schema(carbon_aware_training.fn).properties
    assert properties["max_pause"]["description"].startswith("'threshold' only: the longest pause")
