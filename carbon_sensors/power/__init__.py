"""Energy measurement: NVML for GPUs, RAPL for CPU packages, an estimate otherwise, all behind `PowerMonitor`."""

from carbon_sensors.power.base import ESTIMATE, NVML_ENERGY, NVML_POWER, RAPL, EnergyMeter
from carbon_sensors.power.estimate import EstimateMeter
from carbon_sensors.power.monitor import Measurement, PowerMonitor, discover_meters
from carbon_sensors.power.nvml import NvmlMeter
from carbon_sensors.power.rapl import RaplMeter

__all__ = [
    "ESTIMATE",
    "NVML_ENERGY",
    "NVML_POWER",
    "RAPL",
    "EnergyMeter",
    "EstimateMeter",
    "Measurement",
    "NvmlMeter",
    "PowerMonitor",
    "RaplMeter",
    "discover_meters",
]
