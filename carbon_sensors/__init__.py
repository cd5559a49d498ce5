"""Carbon-Aware-Trainer core: signals, providers, forecasts, plans, power and emissions.

Framework-free: nothing here imports Airflow or Prefect.
"""

from carbon_sensors.errors import CarbonAwareError
from carbon_sensors.replay import Replay
from carbon_sensors.signal import UNIT, IntensityReading, IntensitySignal, SignalKind

__version__ = "0.1.0"
__all__ = ["UNIT", "CarbonAwareError", "IntensityReading", "IntensitySignal", "Replay", "SignalKind"]
