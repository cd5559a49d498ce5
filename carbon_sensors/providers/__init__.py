"""Carbon-intensity sources: recorded traces (offline default) and live APIs, behind one protocol."""

from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.cache import TTLCache, shared_cache
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.fallback import LAST_GOOD, FallbackAnswer, FallbackChain
from carbon_sensors.providers.http import AsyncTransport, RetryPolicy, Secret, SyncTransport
from carbon_sensors.providers.registry import SOURCE_NAMES, make_source
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.providers.watttime import WattTimeProvider

__all__ = [
    "LAST_GOOD",
    "SOURCE_NAMES",
    "AsyncTransport",
    "ElectricityMapsProvider",
    "FallbackAnswer",
    "FallbackChain",
    "IntensitySource",
    "RetryPolicy",
    "Secret",
    "SyncTransport",
    "TTLCache",
    "TraceProvider",
    "UKCarbonIntensityProvider",
    "WattTimeProvider",
    "make_source",
    "shared_cache",
]
