"""An estimate when nothing measures: CPU TDP x this process's CPU share, RAM watts x its size.

Non-blocking: CPU use comes from `psutil` cpu-times deltas of this process (never `cpu_percent(interval=...)`,
which sleeps). In a container, RAM is the cgroup memory limit, not the host's RAM. Every figure it gives is
labelled "estimate".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.power.base import ESTIMATE

# Typical TDP per CPU package, by model-name fragment (first match wins); rough on purpose.
TDP_WATTS: tuple[tuple[str, float], ...] = (
    ("EPYC", 225.0),
    ("Threadripper", 280.0),
    ("Xeon(R) Platinum", 205.0),
    ("Xeon(R) Gold", 150.0),
    ("Xeon(R) Silver", 100.0),
    ("Xeon", 120.0),
    ("Ryzen 9", 105.0),
    ("Ryzen 7", 65.0),
    ("Ryzen 5", 65.0),
    ("Core(TM) i9", 125.0),
    ("Core(TM) i7", 65.0),
    ("Core(TM) i5", 65.0),
    ("Apple M", 30.0),
)
DEFAULT_TDP_WATTS = 85.0
RAM_WATTS_PER_GB = 0.375  # about 3 W per 8 GB of DRAM
_GB = 1024**3
_NO_LIMIT = 1 << 60  # cgroup v1 writes a huge number for "unlimited"


def cpu_model_and_sockets(cpuinfo: Path) -> tuple[str, int]:
    """The CPU model name and socket count from /proc/cpuinfo ('' and 1 when unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "", 1
    model, sockets = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "physical id":
            sockets.add(value.strip())
    return model, max(1, len(sockets))


def tdp_for(model: str) -> float:
    return next((watts for fragment, watts in TDP_WATTS if fragment in model), DEFAULT_TDP_WATTS)


def cgroup_memory_limit(cgroup_root: Path) -> int | None:
    """The container's memory limit in bytes (cgroup v2, then v1), or None when unlimited or absent."""
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        limit = int(text)
        return None if limit >= _NO_LIMIT else limit
    return None


class EstimateMeter:
    """Estimated energy of this process's CPU share and of the RAM it may use."""

    def __init__(
        self,
        *,
        include_cpu: bool = True,
        include_ram: bool = True,
        tdp_watts: float | None = None,
        cpuinfo: str | Path = "/proc/cpuinfo",
        cgroup_root: str | Path = "/sys/fs/cgroup",
        process: psutil.Process | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if tdp_watts is not None and not tdp_watts > 0:
            raise InvalidInputError(f"tdp_watts={tdp_watts} must be a positive number of watts")
        self._process = process if process is not None else psutil.Process()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._notes: list[str] = []
        self.include_cpu, self.include_ram = include_cpu, include_ram
        model, sockets = cpu_model_and_sockets(Path(cpuinfo))
        per_package = tdp_watts if tdp_watts is not None else tdp_for(model)
        self.cpu_watts = per_package * sockets
        self.logical_cpus = psutil.cpu_count() or 1
        limit = cgroup_memory_limit(Path(cgroup_root))
        physical = int(psutil.virtual_memory().total)
        self.ram_bytes = min(limit, physical) if limit is not None else physical
        self.ram_watts = RAM_WATTS_PER_GB * self.ram_bytes / _GB
        if include_cpu:
            self._notes.append(
                f"estimate: CPU {self.cpu_watts:g} W TDP ({model or 'unknown model'}, {sockets} socket(s)) "
                f"x this process's share of {self.logical_cpus} logical CPUs"
            )
        if include_ram:
            origin = "cgroup memory limit" if limit is not None and limit < physical else "physical RAM"
            self._notes.append(
                f"estimate: RAM {self.ram_bytes / _GB:.1f} GB ({origin}) x {RAM_WATTS_PER_GB} W/GB"
            )
        self._cpu0 = self._cpu_seconds()
        self._t0 = self._monotonic()

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def devices(self) -> dict[str, str]:
        names = (["cpu"] if self.include_cpu else []) + (["ram"] if self.include_ram else [])
        return dict.fromkeys(names, ESTIMATE)

    def read_joules(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {}
            if self.include_cpu:
                out["cpu"] = self.cpu_watts * (self._cpu_seconds() - self._cpu0) / self.logical_cpus
            if self.include_ram:
                out["ram"] = self.ram_watts * (self._monotonic() - self._t0)
            return out

    def notes(self) -> list[str]:
        return list(self._notes)

    def close(self) -> None:
        """Nothing to stop: the estimate is computed on demand."""
