"""Carbon-Aware-Trainer's Apache Airflow provider: hook, triggers, sensors and operators."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_PROVIDERS = ["trace", "electricitymaps", "watttime", "uk"]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's provider manager through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "carbon-aware-trainer",
        "name": "Carbon-Aware-Trainer",
        "description": "Carbon-intensity sensors, forecast-window holds and pausable PyTorch training.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Carbon Intensity",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "Carbon Intensity", "python-modules": ["carbon_operators.hooks"]}],
        "sensors": [{"integration-name": "Carbon Intensity", "python-modules": ["carbon_operators.sensors"]}],
        "operators": [
            {
                "integration-name": "Carbon Intensity",
                "python-modules": ["carbon_operators.window", "carbon_operators.training"],
            }
        ],
        "triggers": [
            {"integration-name": "Carbon Intensity", "python-modules": ["carbon_operators.triggers"]}
        ],
        "connection-types": [
            {
                "connection-type": "carbon_intensity",
                "hook-class-name": "carbon_operators.hooks.CarbonIntensityHook",
                "hook-name": "Carbon Intensity",
                "conn-fields": {
                    "provider": {
                        "label": "Provider",
                        "description": "Where the intensity comes from: " + ", ".join(_PROVIDERS),
                        "schema": {
                            "type": ["string", "null"],
                            "enum": [*_PROVIDERS, None],
                            "default": "trace",
                        },
                    },
                    "zone": {
                        "label": "Default zone",
                        "description": "Grid zone used when a task names none (e.g. DE, GB, CAISO_NORTH)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "trace_path": {
                        "label": "Trace file",
                        "description": "Provider 'trace': a CSV/JSON/Parquet file for the default zone",
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_age": {
                        "label": "Maximum data age",
                        "description": "Older readings are refused as stale, e.g. 30min, 3h (provider default)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "cache_ttl": {
                        "label": "Cache time-to-live",
                        "description": "One API call per zone per this long, shared by every task and trigger "
                        "of a process, e.g. 5min (provider default)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "dataset": {
                        "label": "Embedded dataset",
                        "description": "Provider 'trace': electricitymaps-2023 or neso-2023",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["port", "schema"],
                    "relabeling": {
                        "host": "API base URL (optional)",
                        "login": "WattTime username",
                        "password": "API token / WattTime password",
                    },
                    "placeholders": {
                        "host": "leave empty for the provider's public API",
                        "login": "WattTime only",
                        "password": "Electricity Maps auth-token or WattTime password",
                    },
                },
            }
        ],
    }
