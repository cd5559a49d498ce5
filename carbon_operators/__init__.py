"""Carbon-Aware-Trainer's Apache Airflow provider: hook, triggers, sensors and operators."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's provider manager through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "carbon-aware-trainer",
        "name": "Carbon-Aware-Trainer",
        "description": "Carbon-intensity sensors, forecast-window holds and pausable PyTorch training.",
        "versions": [__version__],
    }
