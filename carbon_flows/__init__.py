"""Carbon-Aware-Trainer's Prefect collection: credential blocks, carbon-aware waits and training tasks.

Registered through the `prefect.collections` entry point, so `prefect block register -m carbon_flows` (and
Prefect's collection loading) finds its blocks: this module must import them. Importing it also sends the
core's log records to the Prefect run they happen in (`carbon_flows.logs`).
"""

from carbon_flows.credentials import ElectricityMapsCredentials, WattTimeCredentials
from carbon_flows.logs import forward_core_logs_to_runs

forward_core_logs_to_runs()

__version__ = "0.1.0"
__all__ = ["ElectricityMapsCredentials", "WattTimeCredentials"]
