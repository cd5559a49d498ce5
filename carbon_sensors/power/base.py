"""What every power source gives the monitor: cumulative joules per device since it started, and its label.

Cumulative counters make windows trivial (difference of two reads) and let windows nest or overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The labels a sample can carry; reports list them so an estimate is never mistaken for a measurement.
NVML_ENERGY = "nvml-energy"
NVML_POWER = "nvml-power"
RAPL = "rapl"
ESTIMATE = "estimate"


class EnergyMeter(Protocol):
    """A source of energy readings for one or more devices (GPUs, CPU packages, RAM)."""

    def devices(self) -> dict[str, str]:
        """Device name -> the source label that measures it (e.g. {'cuda:0': 'nvml-energy'})."""
        ...

    def read_joules(self) -> dict[str, float]:
        """Joules per device since the meter was created; never decreasing. Thread-safe."""
        ...

    def notes(self) -> list[str]:
        """Things a report reader must know (a counter reset, a MIG whole-GPU figure, a skipped domain)."""
        ...

    def close(self) -> None:
        """Stop any background thread the meter runs."""
        ...


@dataclass
class CounterAccumulator:
    """Turn a raw hardware energy counter into monotonic joules.

    A counter that goes backwards either wrapped at `wrap_at` raw units (RAPL's `max_energy_range_uj`) or,
    with no wrap range (NVML), was reset: energy since the reset is the new raw value, never negative.
    """

    joules_per_unit: float
    wrap_at: int | None = None
    last_raw: int | None = None
    total_joules: float = 0.0
    resets: int = 0
    wraps: int = 0

    def update(self, raw: int) -> float:
        if self.last_raw is not None:
            delta = raw - self.last_raw
            if delta < 0:
                if self.wrap_at:
                    delta += self.wrap_at
                    self.wraps += 1
                else:
                    delta = raw
                    self.resets += 1
            self.total_joules += delta * self.joules_per_unit
        self.last_raw = raw
        return self.total_joules


@dataclass
class TrapezoidIntegrator:
    """Energy from power samples: the trapezoid rule between consecutive (time, watts) samples."""

    last_time: float | None = None
    last_watts: float = 0.0
    total_joules: float = 0.0
    samples: int = 0

    def add(self, time_s: float, watts: float) -> float:
        if self.last_time is not None and time_s > self.last_time:
            self.total_joules += (self.last_watts + watts) / 2.0 * (time_s - self.last_time)
        if self.last_time is None or time_s >= self.last_time:
            self.last_time, self.last_watts = time_s, watts
        self.samples += 1
        return self.total_joules
