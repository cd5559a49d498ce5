"""Carbon-Aware-Trainer's Prefect collection: credential blocks, carbon-aware waits and training tasks.

Registered through the `prefect.collections` entry point, so `prefect block register -m carbon_flows` (and
Prefect's collection loading) finds its blocks: this module must import them.
"""

from carbon_flows.credentials import ElectricityMapsCredentials, WattTimeCredentials

__version__ = "0.1.0"
__all__ = ["ElectricityMapsCredentials", "WattTimeCredentials"]
