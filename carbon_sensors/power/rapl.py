"""CPU package energy from Linux RAPL (`/sys/class/powercap`), counted once per package.

Only top-level `package-N` domains are used: `psys` already contains the packages, core/uncore/dram
sub-domains are inside them, and a die or MMIO zone that mirrors another counter would double the figure.
Since CVE-2020-8694 `energy_uj` is root-only, so a PermissionError is a normal reason to fall back.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from carbon_sensors.errors import PowerSourceUnavailableError
from carbon_sensors.power.base import RAPL, CounterAccumulator

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/sys/class/powercap")
_TOP_LEVEL_ZONE = re.compile(r"^[a-z-]*rapl(-mmio)?:\d+$")


@dataclass
class RaplDomain:
    """One chosen package counter: its sysfs folder, name and wrap range."""

    path: Path
    name: str
    max_energy_range_uj: int
    counter: CounterAccumulator

    def read_raw(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


class RaplMeter:
    """Package energy per CPU socket; call `read_joules` more often than a wrap (the monitor's timeline does)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self.domains = self._discover()

    def _discover(self) -> list[RaplDomain]:
        if not self.root.is_dir():
            raise PowerSourceUnavailableError(f"RAPL: {self.root} does not exist (no powercap driver here)")
        # MSR-based zones before their MMIO mirrors, so the mirror is the one skipped.
        zones = sorted(
            (p for p in self.root.iterdir() if _TOP_LEVEL_ZONE.match(p.name)),
            key=lambda p: ("-mmio" in p.name, p.name),
        )
        chosen: list[RaplDomain] = []
        seen_values: dict[tuple[int, int], str] = {}
        for zone in zones:
            name = _read_text(zone / "name")
            if not name.startswith("package"):
                self._notes.append(
                    f"RAPL: skipped domain {zone.name} ({name}): it overlaps the package domains"
                )
                continue
            if any(d.name == name for d in chosen):
                self._notes.append(f"RAPL: skipped {zone.name} ({name}): mirrors a domain already counted")
                continue
            try:
                raw = int(_read_text(zone / "energy_uj"))
            except PermissionError as exc:
                raise PowerSourceUnavailableError(
                    f"RAPL: {zone / 'energy_uj'} is not readable by this user (root-only since "
                    f"CVE-2020-8694): {exc.strerror or exc}"
                ) from exc
            max_range = int(_read_text(zone / "max_energy_range_uj"))
            if (raw, max_range) in seen_values:
                self._notes.append(
                    f"RAPL: skipped {zone.name} ({name}): its counter mirrors {seen_values[(raw, max_range)]}"
                )
                continue
            seen_values[(raw, max_range)] = f"{zone.name} ({name})"
            counter = CounterAccumulator(joules_per_unit=1e-6, wrap_at=max_range)
            counter.update(raw)
            chosen.append(RaplDomain(zone, name, max_range, counter))
        if not chosen:
            raise PowerSourceUnavailableError(f"RAPL: no package domain under {self.root}")
        return chosen

    def devices(self) -> dict[str, str]:
        return {f"cpu:{d.name}": RAPL for d in self.domains}

    def read_joules(self) -> dict[str, float]:
        with self._lock:
            return {f"cpu:{d.name}": d.counter.update(d.read_raw()) for d in self.domains}

    def notes(self) -> list[str]:
        wraps = [f"RAPL: {d.name} wrapped {d.counter.wraps} time(s)" for d in self.domains if d.counter.wraps]
        return [*self._notes, *wraps]

    def close(self) -> None:
        """Nothing to stop: RAPL is read on demand."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError as exc:
        raise PowerSourceUnavailableError(f"RAPL: {path} is missing") from exc
