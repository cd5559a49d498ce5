"""`PowerMonitor`: one place that reads every power source, in named windows and on a background timeline.

Windows (`begin_window` / `end_window`) give joules per device for a step, an epoch or a whole job. The
timeline thread samples every `sample_interval_s` for long runs, which also keeps RAPL read often enough not
to miss a counter wrap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from carbon_sensors.errors import InvalidInputError, PowerSourceUnavailableError
from carbon_sensors.power.base import EnergyMeter
from carbon_sensors.power.estimate import EstimateMeter
from carbon_sensors.power.nvml import NvmlMeter
from carbon_sensors.power.rapl import DEFAULT_ROOT, RaplMeter
from carbon_sensors.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """Energy used between two moments: joules per device, and which source measured each device."""

    name: str
    started_at: pd.Timestamp
    ended_at: pd.Timestamp
    seconds: float
    joules: dict[str, float]
    sources: dict[str, str]
    notes: tuple[str, ...] = field(default=())

    @property
    def total_joules(self) -> float:
        return sum(self.joules.values())

    @property
    def kwh(self) -> float:
        return self.total_joules / 3.6e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "seconds": self.seconds,
            "joules": dict(self.joules),
            "total_joules": self.total_joules,
            "sources": dict(self.sources),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Mark:
    wall: pd.Timestamp
    mono: float
    joules: dict[str, float]


def discover_meters(
    *,
    rapl_root: str | Path = DEFAULT_ROOT,
    environ: Mapping[str, str] | None = None,
    notes: list[str] | None = None,
) -> list[EnergyMeter]:
    """NVML for the visible GPUs, RAPL for CPU packages (else a CPU estimate), and a RAM estimate.

    Each source that cannot be used adds its reason to `notes` and is logged, so the fallback is visible.
    """
    reasons = notes if notes is not None else []
    meters: list[EnergyMeter] = []
    try:
        meters.append(NvmlMeter(environ=environ))
    except PowerSourceUnavailableError as exc:
        reasons.append(str(exc))
    try:
        meters.append(RaplMeter(rapl_root))
        cpu_estimated = False
    except PowerSourceUnavailableError as exc:
        reasons.append(f"{exc}; CPU energy is estimated instead")
        cpu_estimated = True
    meters.append(EstimateMeter(include_cpu=cpu_estimated, include_ram=True))
    for reason in reasons:
        log.info("power: %s", reason)
    return meters


class PowerMonitor:
    """Reads all meters together; thread-safe; use as a context manager to stop the timeline thread."""

    def __init__(
        self,
        meters: Sequence[EnergyMeter] | None = None,
        *,
        sample_interval_s: float = 1.0,
        timeline_limit: int = 100_000,
        rapl_root: str | Path = DEFAULT_ROOT,
        environ: Mapping[str, str] | None = None,
        start: bool = True,
    ) -> None:
        if not sample_interval_s > 0:
            raise InvalidInputError(
                f"sample_interval_s={sample_interval_s} must be a positive number of seconds"
            )
        self._fallback_notes: list[str] = []
        self.meters: list[EnergyMeter] = (
            list(meters)
            if meters is not None
            else discover_meters(rapl_root=rapl_root, environ=environ, notes=self._fallback_notes)
        )
        self.sample_interval_s = sample_interval_s
        self._lock = threading.Lock()
        self._windows: dict[str, _Mark] = {}
        self._timeline: deque[Measurement] = deque(maxlen=timeline_limit)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = self._mark()
        if start:
            self.start()

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._timeline_loop, name="power-timeline", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for meter in self.meters:
            meter.close()

    def __enter__(self) -> PowerMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- readings ------------------------------------------------------------------------------------------
    def sources(self) -> dict[str, str]:
        """Device -> source label for every measured device."""
        out: dict[str, str] = {}
        for meter in self.meters:
            out.update(meter.devices())
        return out

    def notes(self) -> list[str]:
        """Why a source is missing (fallbacks) and what the reader must know about the others."""
        return [*self._fallback_notes, *(n for m in self.meters for n in m.notes())]

    def read(self) -> dict[str, float]:
        """Cumulative joules per device since each meter started."""
        out: dict[str, float] = {}
        for meter in self.meters:
            out.update(meter.read_joules())
        return out

    def _mark(self) -> _Mark:
        return _Mark(utcnow(), time.monotonic(), self.read())

    def _between(self, name: str, begin: _Mark, end: _Mark) -> Measurement:
        joules = {dev: max(0.0, value - begin.joules.get(dev, 0.0)) for dev, value in end.joules.items()}
        return Measurement(
            name, begin.wall, end.wall, end.mono - begin.mono, joules, self.sources(), tuple(self.notes())
        )

    # --- windows -------------------------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        """Start a named window (a step, an epoch, a job); a name already open is restarted."""
        mark = self._mark()
        with self._lock:
            self._windows[name] = mark

    def end_window(self, name: str) -> Measurement:
        """Close a named window and return the energy used in it."""
        with self._lock:
            begin = self._windows.pop(name, None)
        if begin is None:
            raise InvalidInputError(
                f"no open power window named {name!r}; open ones: {sorted(self._windows)}"
            )
        return self._between(name, begin, self._mark())

    # --- timeline ------------------------------------------------------------------------------------------
    def sample(self) -> Measurement:
        """Close one timeline interval now (the background thread calls this every `sample_interval_s`)."""
        mark = self._mark()
        with self._lock:
            begin, self._last = self._last, mark
            measurement = self._between("timeline", begin, mark)
            self._timeline.append(measurement)
        return measurement

    def timeline(self) -> list[Measurement]:
        with self._lock:
            return list(self._timeline)

    def _timeline_loop(self) -> None:
        while not self._stop.wait(self.sample_interval_s):
            try:
                self.sample()
            except Exception:  # a failing sensor must never kill the job it measures
                log.exception("power timeline sample failed")
