"""Carbon-intensity sources: recorded traces (offline default) and live APIs, behind one protocol."""

from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.trace import TraceProvider

__all__ = ["IntensitySource", "TraceProvider"]
